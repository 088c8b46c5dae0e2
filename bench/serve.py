"""Serving benchmark: the figures of the serving issue, side by side, in one run.

    .venv/bin/python bench/serve.py [--config esi_cpu] [--threads N] [--score-records 1000,10000]

1. embeddings/s: single-ECG requests from ``--clients-tp`` (64) concurrent clients through HTTP (the service
   batches them), each of the ``--throughput-n`` (256) ECGs sent ``--rounds`` (4) times so the figure is the
   steady state, vs the in-process Engine on the same ECGs in batches of 64 (goal: ratio >= 0.8), and vs its
   forward pass alone on windows preprocessed beforehand; then the same ECGs 8 per request from 8 clients (the
   per-request HTTP cost shared by 8). The ratio uses the binary path (``embed_npy``, a .npy
   upload); the JSON path (``embed``) is printed beside it. The in-process figure is measured before, between and
   after the HTTP runs and averaged; CPU seconds per embedding are printed too (the machine may be shared).
2. p50/p99 latency of a single-ECG ``zero_shot`` at concurrency 1 and 8, JSON and .npy (goal: p99 < 200 ms at
   concurrency 1, esi_cpu on 2 cores);
3. 32 concurrent clients for 60 s (half JSON, half .npy; every 4th request with its own free-text prompt, so
   caches keyed by request content are exercised): errors (goal 0) and the server's RSS at start, after a
   warm-up and at the end (goal: flat after the warm-up);
4. ``esi score`` records/s and peak RSS at 1 000 vs 10 000 records (goal: flat), each in a fresh process.

Torch threads are the same in the bench process and the server (``--threads``, default: all cores), and both
are printed. Request bodies are encoded once, before timing: the figures are the service's, not the client's
JSON encoder's. Everything runs in a temporary ESI_HOME / BENTOML_HOME; the models are seeded random
initialisations (speed and memory do not depend on the weights).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

_local = threading.local()
MULTI = 8  # ECGs per request of the second throughput run


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


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the server's workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


# ------------------------------------------------------------------------------------------------ requests
def json_body(x: np.ndarray, **fields) -> bytes:
    return json.dumps({"ecg": x.tolist(), "fs": 500, **fields}).encode()


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def post(url: str, endpoint: str, body: bytes | dict, timeout: float = 300) -> tuple[int, float]:
    """(status, seconds) of one POST: bytes go as a JSON body, a dict as multipart (its 'ecg' a .npy file)."""
    import requests

    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    t0 = time.perf_counter()
    try:
        if isinstance(body, bytes):
            r = session.post(f"{url}/{endpoint}", data=body, headers={"content-type": "application/json"},
                             timeout=timeout)
        else:
            fields = {k: (None, v if isinstance(v, str) else json.dumps(v)) for k, v in body.items() if k != "ecg"}
            r = session.post(f"{url}/{endpoint}", files={"ecg": ("ecg.npy", body["ecg"]), **fields}, timeout=timeout)
        code = r.status_code
    except requests.RequestException:
        code = -1
    return code, time.perf_counter() - t0


def npy_request(x: np.ndarray, **fields) -> dict:
    return {"ecg": npy_bytes(x), "fs": 500, **fields}


# ------------------------------------------------------------------------------------------------ figures
def in_process(engine, x: np.ndarray, forward_only: bool = False) -> tuple[float, float]:
    """(embeddings/s, CPU s per embedding) of the Engine on x in batches of 64: preprocessing + forward, or
    (``forward_only``) the forward alone on windows preprocessed beforehand."""
    windows = engine.prepare(x, 500) if forward_only else None
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(0, len(x), 64):
        if forward_only:
            engine.embed_windows(windows[s:s + 64])
        else:
            engine.embed(x[s:s + 64], 500)
    return len(x) / (time.perf_counter() - t0), (time.process_time() - c0) / len(x)


def http_rate(url: str, pid: int, endpoint: str, bodies: list, clients: int) -> dict[str, float]:
    """Embeddings/s, errors and CPU s per embedding (server, client) of single-ECG requests."""
    post(url, endpoint, bodies[0])
    t0, s0, c0 = time.perf_counter(), tree_cpu_s(pid), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        codes = [c for c, _ in pool.map(lambda b: post(url, endpoint, b), bodies)]
    n = len(bodies)
    return {"rate": n / (time.perf_counter() - t0), "errors": sum(c != 200 for c in codes),
            "server_cpu": (tree_cpu_s(pid) - s0) / n, "client_cpu": (time.process_time() - c0) / n}


def server_info(url: str) -> dict:
    import requests

    return requests.post(f"{url}/info", json={}, timeout=60).json()


def throughput(url: str, pid: int, engine, n: int, clients: int, rounds: int) -> dict:
    """The n ECGs in-process, and ``rounds`` times over as single-ECG requests (steady state, not ramp-up)."""
    x = ecgs(n, seed=1)
    npy_bodies = [npy_request(x[i:i + 1]) for i in range(n)]
    engine.embed(x[:64], 500)  # both sides warmed up with full batches (one-time kernel set-up)
    http_rate(url, pid, "embed_npy", npy_bodies[:clients], clients)
    before, cpu_before = in_process(engine, x)
    b0 = server_info(url)["batching"]
    npy = http_rate(url, pid, "embed_npy", npy_bodies * rounds, clients)
    b1 = server_info(url)["batching"]
    after, cpu_after = in_process(engine, x)
    # the same ECGs, MULTI per request from clients/MULTI clients: the per-request HTTP cost shared by MULTI
    multi = http_rate(url, pid, "embed_npy", [npy_request(x[i:i + MULTI]) for i in range(0, n, MULTI)] * rounds,
                      max(1, clients // MULTI))
    multi = {**multi, "rate": multi["rate"] * MULTI, "server_cpu": multi["server_cpu"] / MULTI}
    last, cpu_last = in_process(engine, x)
    fwd, _ = in_process(engine, x, forward_only=True)
    js = http_rate(url, pid, "embed", [json_body(x[i:i + 1]) for i in range(n)] * rounds, clients)
    local, local_cpu = (before + after + last) / 3, (cpu_before + cpu_after + cpu_last) / 3
    return {"in_process": local, "in_process_runs": (before, after, last), "in_process_cpu": local_cpu, "npy": npy,
            "multi": multi, "ratio_multi": multi["rate"] / local,
            "forward_only": fwd, "ratio_forward": npy["rate"] / fwd,
            "json": js, "ratio": npy["rate"] / local, "ratio_json": js["rate"] / local,
            "errors": npy["errors"] + js["errors"],
            "mean_batch": (b1["windows"] - b0["windows"]) / max(b1["batches"] - b0["batches"], 1)}


def latency(url: str, concurrency: int, requests_n: int, binary: bool) -> dict[str, float]:
    x = ecgs(1, seed=2)
    body = npy_request(x) if binary else json_body(x)
    endpoint = "zero_shot_npy" if binary else "zero_shot"
    post(url, endpoint, body)
    with ThreadPoolExecutor(concurrency) as pool:
        res = list(pool.map(lambda _: post(url, endpoint, body), range(requests_n)))
    ms = np.array([t for _, t in res]) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "errors": sum(c != 200 for c, _ in res), "n": requests_n}


def soak(url: str, pid: int, clients: int, seconds: float, warmup: float) -> dict[str, float]:
    x = ecgs(1, seed=3)
    bodies = {False: json_body(x), True: npy_request(x)}
    samples: list[tuple[float, float]] = [(0.0, tree_rss_mb(pid))]
    t_start = time.monotonic()
    stop = t_start + seconds
    counter = iter(range(10**9))

    def client(i: int) -> tuple[int, int]:
        ok = bad = 0
        binary = bool(i % 2)
        while time.monotonic() < stop:
            k = next(counter)
            if k % 4 == 3:  # a prompt no other request has: a new label set each time
                body = (npy_request(x, prompts=[f"ECG pattern number {k}"]) if binary
                        else json_body(x, prompts=[f"ECG pattern number {k}"]))
            else:
                body = bodies[binary]
            code, _ = post(url, "zero_shot_npy" if binary else "zero_shot", body)
            ok, bad = (ok + 1, bad) if code == 200 else (ok, bad + 1)
        return ok, bad

    def sampler() -> None:
        while time.monotonic() < stop:
            time.sleep(2.0)
            samples.append((time.monotonic() - t_start, tree_rss_mb(pid)))

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(clients) as pool:
        res = list(pool.map(client, range(clients)))
    watcher.join()
    samples.append((time.monotonic() - t_start, tree_rss_mb(pid)))
    after = [r for t, r in samples if t >= warmup]
    half = [(t, r) for t, r in samples if t >= seconds / 2]
    slope = (half[-1][1] - half[0][1]) / max(half[-1][0] - half[0][0], 1e-9) * 60
    return {"requests": sum(r[0] + r[1] for r in res), "errors": sum(r[1] for r in res),
            "rss_start_mb": samples[0][1], "rss_warm_mb": after[0], "rss_end_mb": samples[-1][1],
            "rss_max_after_warm_mb": max(after), "slope_mb_min": slope, "samples": samples}


# Peak RSS from VmHWM, the high-water mark of this process's own address space: ru_maxrss is wrong here, since
# Linux carries the parent's peak over into a (v)forked and exec'd child, so it reported the bench process.
SCORE_CHILD = """
import json, resource, sys, time
from esi.serving.score import score
s = score(sys.argv[1], sys.argv[2], model=sys.argv[3], labels=sys.argv[4], batch_size=64, part_size=1000,
          progress=False, reference=None)
try:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
except OSError:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"records": s.records, "records_per_s": s.records_per_s, "seconds": s.seconds,
                  "peak_rss_mb": hwm, "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
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


def report(args, threads: dict, tp: dict, lat: dict, sk: dict, sc: list[dict]) -> None:
    load = os.getloadavg()
    print(f"\nbench/serve.py — {args.config} served by 1 BentoML worker; {os.cpu_count()} CPU cores, load average "
          f"{load[0]:.1f} / {load[1]:.1f} (1 / 5 min) at the end (shared machine: compare within this run)")
    print(f"torch threads: bench process {threads['bench']}, server {threads['server']} (OMP_NUM_THREADS = "
          f"MKL_NUM_THREADS = {args.threads} in both); server batches of up to {threads['max_batch']} windows")
    npy, js = tp["npy"], tp["json"]
    rows = [
        ("embeddings/s in-process (batches of 64, mean of 3 runs)",
         f"{tp['in_process']:.1f} ({', '.join(f'{r:.1f}' for r in tp['in_process_runs'])})"),
        (f"embeddings/s HTTP embed_npy, 1 ECG x {args.clients_tp} clients x {args.rounds}", f"{npy['rate']:.1f}"),
        ("  ratio .npy HTTP / in-process (goal >= 0.8)", f"{tp['ratio']:.2f}"),
        ("  mean windows per forward in the server", f"{tp['mean_batch']:.1f}"),
        (f"embeddings/s HTTP embed_npy, {MULTI} ECGs x {max(1, args.clients_tp // MULTI)} clients x {args.rounds}",
         f"{tp['multi']['rate']:.1f}"),
        ("  ratio .npy HTTP / in-process", f"{tp['ratio_multi']:.2f}"),
        ("embeddings/s in-process, forward only (preprocessed)", f"{tp['forward_only']:.1f}"),
        ("  ratio .npy HTTP / in-process forward only", f"{tp['ratio_forward']:.2f}"),
        (f"embeddings/s HTTP embed (JSON), 1 ECG x {args.clients_tp} clients x {args.rounds}", f"{js['rate']:.1f}"),
        ("  ratio JSON HTTP / in-process", f"{tp['ratio_json']:.2f}"),
        ("CPU ms per embedding: in-process / server .npy / server JSON",
         f"{tp['in_process_cpu'] * 1e3:.0f} / {npy['server_cpu'] * 1e3:.0f} / {js['server_cpu'] * 1e3:.0f}"),
        ("  CPU ratio in-process / server (.npy, JSON)",
         f"{tp['in_process_cpu'] / npy['server_cpu']:.2f}, {tp['in_process_cpu'] / js['server_cpu']:.2f}"),
        ("  client CPU ms per request (.npy, JSON; not in the above)",
         f"{npy['client_cpu'] * 1e3:.1f}, {js['client_cpu'] * 1e3:.1f}"),
    ]
    for (c, binary), r in lat.items():
        kind = ".npy" if binary else "JSON"
        rows.append((f"zero_shot 1 ECG {kind}, concurrency {c}: p50 / p99 ms", f"{r['p50']:.0f} / {r['p99']:.0f}"))
    rows += [
        (f"{args.clients} clients x {args.soak_s:g} s: requests / errors", f"{sk['requests']} / {sk['errors']}"),
        (f"  server RSS MiB: start / after {args.warmup_s:g} s / end",
         f"{sk['rss_start_mb']:.0f} / {sk['rss_warm_mb']:.0f} / {sk['rss_end_mb']:.0f}"),
        ("  end - after warm-up (max after warm-up)", f"{sk['rss_end_mb'] - sk['rss_warm_mb']:+.0f} MiB "
                                                      f"({sk['rss_max_after_warm_mb']:.0f})"),
        ("  RSS trend over the second half of the soak", f"{sk['slope_mb_min']:+.0f} MiB/min"),
    ]
    for r in sc:
        rows.append((f"esi score {r['n']:>6} records ({args.score_config}): rec/s, peak MiB",
                     f"{r['records_per_s']:.1f} / {r['peak_rss_mb']:.0f}"))
        rows.append(("  (ru_maxrss, which includes the parent's peak)", f"{r['ru_maxrss_mb']:.0f}"))
    if len(sc) == 2:
        a, b = sc
        rows.append(("  change 10x records: rec/s, peak RSS", f"{b['records_per_s'] / a['records_per_s'] - 1:+.1%} / "
                                                              f"{b['peak_rss_mb'] / a['peak_rss_mb'] - 1:+.1%}"))
    print(f"{'figure':<60}{'value':>30}")
    for name, value in rows:
        print(f"{name:<60}{value:>30}")
    print("RSS during the soak (s: MiB): " + ", ".join(f"{t:.0f}: {r:.0f}" for t, r in sk["samples"]))
    errs = [tp["errors"], *(r["errors"] for r in lat.values())]
    print(f"(errors during throughput / latency runs: {' / '.join(map(str, errs))}; work dir {args.work})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="esi_cpu", help="model served and timed")
    ap.add_argument("--score-config", default="esi_test", help="model of the esi score scaling run")
    ap.add_argument("--score-records", default="1000,10000")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, bench and server")
    ap.add_argument("--throughput-n", type=int, default=256, help="distinct ECGs of the throughput runs")
    ap.add_argument("--rounds", type=int, default=4, help="HTTP requests per ECG in each throughput run")
    ap.add_argument("--clients-tp", type=int, default=64, help="concurrent clients of the throughput runs")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--soak-s", type=float, default=60.0)
    ap.add_argument("--warmup-s", type=float, default=20.0, help="RSS is judged flat from this second of the soak")
    args = ap.parse_args()
    # the same thread settings in this process as in the server, set before torch is imported: with
    # OMP_NUM_THREADS unset, torch.set_num_threads alone gave the in-process forward ~1.7x the CPU time
    thread_env = {k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(thread_env)
    import torch

    args.work = Path(tempfile.mkdtemp(prefix="esi-bench-serve-"))
    env = dict(os.environ, ESI_HOME=str(args.work / "home"), BENTOML_HOME=str(args.work / "bentoml"), **thread_env)
    os.environ.update(ESI_HOME=env["ESI_HOME"], BENTOML_HOME=env["BENTOML_HOME"])
    torch.set_num_threads(args.threads)
    from esi.serving.build import build_bento
    from esi.serving.engine import Engine

    ckpt = checkpoint(args.config, args.work / "model.pt")
    bento = build_bento(str(ckpt))
    engine = Engine.from_uri(str(ckpt))
    engine.warm_up()
    proc, url = start_server(bento, env, args.work / "serve.log")
    try:
        info = server_info(url)
        threads = {"bench": torch.get_num_threads(), "server": info["torch_threads"],
                   "max_batch": info["batching"]["max_batch_size"]}
        tp = throughput(url, proc.pid, engine, args.throughput_n, args.clients_tp, args.rounds)
        lat = {(c, b): latency(url, c, n, b) for c, n in ((1, 100), (8, 128)) for b in (False, True)}
        sk = soak(url, proc.pid, args.clients, args.soak_s, args.warmup_s)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    del engine
    sizes = [int(s) for s in args.score_records.split(",")]
    sc = score_scaling(args.work, checkpoint(args.score_config, args.work / "score_model.pt"), sizes, env)
    report(args, threads, tp, lat, sk, sc)


if __name__ == "__main__":
    main()
