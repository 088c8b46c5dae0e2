"""Serving benchmark: the figures of the serving issue, side by side, in one run.

    .venv/bin/python bench/serve.py [--config esi_cpu] [--score-config esi_test] [--score-records 1000,10000]

1. embeddings/s: single-ECG ``embed`` requests from 8 concurrent clients through HTTP (adaptive batching)
   vs the in-process Engine on the same inputs (goal: ratio >= 0.8);
2. p50/p99 latency of a single-ECG ``zero_shot`` at concurrency 1 and 8 (goal: p99 < 200 ms at 1, esi_cpu);
3. 32 concurrent clients for 60 s: errors (goal 0) and the server's RSS at start and end (goal: flat);
4. ``esi score`` records/s and peak RSS at 1 000 vs 10 000 records (goal: flat), each in a fresh process.

Everything runs in a temporary ESI_HOME / BENTOML_HOME; the model is a seeded random initialisation (speed and
memory do not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def ecgs(n: int, seed: int = 0, samples: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 500.0
    beat = np.exp(-((t % 0.83) - 0.3) ** 2 / 0.0004)
    return (rng.uniform(0.3, 1.5, (n, 12, 1)) * beat + 0.05 * rng.standard_normal((n, 12, samples))).astype(np.float32)


def checkpoint(config: str, path: Path) -> Path:
    import torch

    from esi.models import create_model
    from esi.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(path, create_model(config, text_pretrained=False))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bento: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    import requests

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", bento, "--host", "127.0.0.1", "--port",
                             str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bentoml serve exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("bentoml serve was not ready in 300 s")


def tree_rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def post(url: str, endpoint: str, body: dict, timeout: float = 300) -> tuple[int, float]:
    import requests

    t0 = time.perf_counter()
    try:
        code = requests.post(f"{url}/{endpoint}", json=body, timeout=timeout).status_code
    except requests.RequestException:
        code = -1
    return code, time.perf_counter() - t0


def throughput(url: str, engine, n: int) -> dict[str, float]:
    x = ecgs(n, seed=1)
    engine.embed(x[:2], 500)  # warm-up
    t0 = time.perf_counter()
    for s in range(0, n, 64):
        engine.embed(x[s:s + 64], 500)
    local = n / (time.perf_counter() - t0)
    bodies = [{"ecg": x[i:i + 1].tolist(), "fs": 500} for i in range(n)]
    post(url, "embed", bodies[0])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        codes = [c for c, _ in pool.map(lambda b: post(url, "embed", b), bodies)]
    http = n / (time.perf_counter() - t0)
    return {"in_process": local, "http": http, "ratio": http / local, "errors": sum(c != 200 for c in codes)}


def latency(url: str, concurrency: int, requests_n: int) -> dict[str, float]:
    body = {"ecg": ecgs(1, seed=2).tolist(), "fs": 500}
    post(url, "zero_shot", body)
    with ThreadPoolExecutor(concurrency) as pool:
        res = list(pool.map(lambda _: post(url, "zero_shot", body), range(requests_n)))
    ms = np.array([t for _, t in res]) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "errors": sum(c != 200 for c, _ in res), "n": requests_n}


def soak(url: str, pid: int, clients: int, seconds: float) -> dict[str, float]:
    body = {"ecg": ecgs(1, seed=3).tolist(), "fs": 500}
    rss_start = tree_rss_mb(pid)
    stop = time.monotonic() + seconds

    def client(_: int) -> tuple[int, int]:
        ok = bad = 0
        while time.monotonic() < stop:
            code, _ = post(url, "zero_shot", body)
            ok, bad = (ok + 1, bad) if code == 200 else (ok, bad + 1)
        return ok, bad

    with ThreadPoolExecutor(clients) as pool:
        res = list(pool.map(client, range(clients)))
    return {"requests": sum(r[0] + r[1] for r in res), "errors": sum(r[1] for r in res),
            "rss_start_mb": rss_start, "rss_end_mb": tree_rss_mb(pid)}


SCORE_CHILD = """
import json, resource, sys, time
from esi.serving.score import score
s = score(sys.argv[1], sys.argv[2], model=sys.argv[3], labels=sys.argv[4], batch_size=64, part_size=1000,
          progress=False, reference=None)
print(json.dumps({"records": s.records, "records_per_s": s.records_per_s, "seconds": s.seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def score_scaling(work: Path, ckpt: Path, sizes: list[int], env: dict[str, str]) -> list[dict]:
    from esi.data.store import write_store

    labels = work / "labels.txt"
    labels.write_text("AF\nsinus rhythm\nRBBB\nLBBB\nnormal ECG\n")
    out = []
    for n in sizes:
        store = work / f"store-{n}"
        rows = [{"record_id": f"r{i:06d}", "source": "bench", "path": ""} for i in range(n)]
        write_store(store, rows, (ecgs(min(1000, n - s), seed=s) for s in range(0, n, 1000)), shard_size=1000)
        res = subprocess.run([sys.executable, "-c", SCORE_CHILD, str(store), str(work / f"scores-{n}"), str(ckpt),
                              str(labels)], capture_output=True, text=True, env=env, check=True)
        out.append({"n": n, **json.loads(res.stdout.strip().splitlines()[-1])})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="esi_cpu", help="model served and timed")
    ap.add_argument("--score-config", default="esi_test", help="model of the esi score scaling run")
    ap.add_argument("--score-records", default="1000,10000")
    ap.add_argument("--throughput-n", type=int, default=64)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--soak-s", type=float, default=60.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="esi-bench-serve-"))
    env = dict(os.environ, ESI_HOME=str(work / "home"), BENTOML_HOME=str(work / "bentoml"))
    os.environ.update(ESI_HOME=env["ESI_HOME"], BENTOML_HOME=env["BENTOML_HOME"])
    from esi.serving.build import build_bento
    from esi.serving.engine import Engine

    ckpt = checkpoint(args.config, work / "model.pt")
    bento = build_bento(str(ckpt))
    engine = Engine.from_uri(str(ckpt))
    engine.warm_up()
    proc, url = start_server(bento, env, work / "serve.log")
    try:
        tp = throughput(url, engine, args.throughput_n)
        lat1, lat8 = latency(url, 1, 30), latency(url, 8, 64)
        sk = soak(url, proc.pid, args.clients, args.soak_s)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    sizes = [int(s) for s in args.score_records.split(",")]
    sc = score_scaling(work, checkpoint(args.score_config, work / "score_model.pt"), sizes, env)
    cores = os.cpu_count()
    load = os.getloadavg()[0]
    print(f"\nbench/serve.py — {args.config} served by 1 BentoML worker; {cores} CPU cores, load average {load:.1f} "
          "at the end (shared machine)")
    print(f"{'figure':<52}{'value':>34}")
    print(f"{'embeddings/s in-process (batches of 64)':<52}{tp['in_process']:>34.1f}")
    print(f"{'embeddings/s HTTP embed, 1 ECG x 8 clients (batching)':<52}{tp['http']:>34.1f}")
    print(f"{'  ratio HTTP / in-process (goal >= 0.8)':<52}{tp['ratio']:>34.2f}")
    print(f"{'zero_shot 1 ECG, concurrency 1: p50 / p99 ms':<52}{lat1['p50']:>20.0f} / {lat1['p99']:<11.0f}")
    print(f"{'zero_shot 1 ECG, concurrency 8: p50 / p99 ms':<52}{lat8['p50']:>20.0f} / {lat8['p99']:<11.0f}")
    print(f"{f'{args.clients} clients x {args.soak_s:g} s: requests / errors':<52}"
          f"{sk['requests']:>20d} / {sk['errors']:<11d}")
    print(f"{'  server RSS start -> end (MiB)':<52}{sk['rss_start_mb']:>20.0f} -> {sk['rss_end_mb']:<8.0f}")
    for r in sc:
        label = f"esi score {r['n']:>6} records ({args.score_config}): rec/s, peak MiB"
        print(f"{label:<52}"
              f"{r['records_per_s']:>20.1f} / {r['peak_rss_mb']:<11.0f}")
    print(f"(errors during throughput/latency: {tp['errors']} / {lat1['errors']} / {lat8['errors']}; work dir {work})")


if __name__ == "__main__":
    main()
