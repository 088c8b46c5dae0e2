"""Throughput of one ESI pretraining step (forward + backward + clip + AdamW): today's eager path against the
trainer's, side by side in ONE run, steps interleaved (ratios are only comparable within a run: this CPU is
shared, and interleaving keeps a load change from favouring one path).

Paths:
- ``baseline``: the step as it was before issue 15 (dense 30k-wide caption logits at every position incl.
  padding, cross-entropy over them, torch's per-tensor AdamW loop, random batches padded to their longest);
- ``new``: the trainer's Stepper (esi.train.step) with its defaults: vocabulary logits and cross-entropy only
  at valid target positions, fused AdamW, the in-place temperature clamp; the same random batches;
- ``bucketed``: ``new`` with batches grouped by caption length over windows of ``--buckets`` batches
  (esi.train.data.ResumableDistributedSampler with lengths; the trainer's ``length_buckets``, off by default);
- ``compiled``: ``new`` under torch.compile (esi.train.compile: the ECG encoder as one static-shape graph, the
  caption decoder as one graph dynamic in rows and caption length; the trainer's ``compile``). Its first step
  is the compile warm-up, reported as "warm-up s" with the steps it takes to pay back against ``new``;
- ``compiled+bucketed``: both levers together (the trainer's ``compile`` with ``length_buckets``).

All paths train one model instance (each its own optimizer) on the same pool of records whose captions have
lengths spread over 32..``--tokens`` (128), batch 8 x 12 leads x 5000 samples, fp32. FLOPs are counted by
esi.train.flops (torch's FlopCounterMode with the depthwise-convolution and CPU-attention corrections) over the
forward + backward of each timed batch (the compiled path: on the same batches, eagerly: the same math); the
table shows GFLOP/step, achieved GFLOP/s and its share of the fp32 matmul peak (2048x2048 ``torch.mm``), and the
share on "useful" FLOPs (the fewest FLOPs per sample of the paths, times each path's samples/s). The peak is
measured in the same process as the steps, a few mm between each round of steps, best of all of them, so a
load change on this shared CPU moves both alike (the start-up peak is printed too). "cpu s" is the median
process CPU time per step (both threads): steadier than wall time when other jobs share the cores. Peak
memory: one step of each path in its own subprocess (peak RSS on CPU). esi_tiny's text tower (BioLinkBERT)
cannot be loaded offline: on CPU it runs with the MiniLM tower.

    python bench/train_step.py --models esi_tiny --threads 2      # baseline, new, bucketed, compiled
    python bench/train_step.py --baseline                         # today's eager path only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

TEXT = ("63-year-old male. Sinus rhythm with right bundle branch block: prolonged QRS duration (about 140 ms), "
        "an M-shaped rSR' pattern in V1-V3 and a wide slurred S wave in I and V6; secondary ST-T changes in the "
        "right precordial leads. Normal axis, no signs of ischaemia. Compared with the previous tracing the QRS "
        "has widened; T-wave inversion in V1-V3 is secondary to the conduction delay. No atrial enlargement, no "
        "pathological Q waves, PR interval normal at 180 ms, QTc 450 ms. Heart rate 72 beats per minute, regular.")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def matmul_peak_gflops(device: str = "cpu", n: int = 2048, repeats: int = 20) -> float:
    """fp32 (CPU) / bf16 (CUDA) GFLOP/s of an n x n mm, best of ``repeats``."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _pool(model: Any, n: int, max_tokens: int, seed: int) -> tuple[Any, Any]:
    """n token rows with lengths spread over 32..max_tokens ([CLS] ... [SEP]), padded to max_tokens."""
    import numpy as np
    import torch

    full = model.tokenize([TEXT], max_length=512)["input_ids"][0]
    body = full[1:-1]
    while body.numel() < max_tokens:
        body = torch.cat([body, body])
    lengths = np.random.default_rng(seed).integers(min(32, max_tokens), max_tokens + 1, size=n)
    ids = torch.full((n, max_tokens), int(model.text.pad_token_id), dtype=torch.long)
    mask = torch.zeros((n, max_tokens), dtype=torch.long)
    for i, length in enumerate(lengths):
        ids[i, 0], ids[i, 1:length - 1], ids[i, length - 1] = full[0], body[:length - 2], full[-1]
        mask[i, :length] = 1
    return ids, mask


def _batches(ids: Any, mask: Any, signals: Any, batch: int, buckets: int) -> list[dict]:
    """The pool as batches in sampler order (length-grouped when ``buckets``), collated as the trainer does."""
    from esi.train.data import ResumableDistributedSampler, collate

    lengths = mask.sum(1).numpy() if buckets else None
    sampler = ResumableDistributedSampler(list(range(ids.shape[0])), seed=2, lengths=lengths, batch_size=batch,
                                          bucket_batches=buckets)
    order = list(sampler)
    return [collate([{"signal": signals[r], "input_ids": ids[r], "attention_mask": mask[r], "position": r}
                     for r in order[s:s + batch]]) for s in range(0, len(order) - batch + 1, batch)]


def _path(model: Any, path: str, dev: Any, dtype: Any) -> tuple[Callable, Callable]:
    """(step, forward_backward) of one path on ``model`` (forward_backward is always eager)."""
    import torch

    from esi.losses import CoCaLoss
    from esi.train.distributed import DistInfo
    from esi.train.schedule import build_optimizer, build_scheduler
    from esi.train.step import Stepper

    loss_fn = CoCaLoss(1.0, 1.0)
    opt = build_optimizer(model, lr=5e-5, weight_decay=0.05, fused=False if path == "baseline" else None)
    stepper = Stepper(model, model, loss_fn, opt, build_scheduler(opt, 100, 0, 100, 0.1), DistInfo(device=dev),
                      grad_clip=1.0, autocast_dtype=dtype)

    def forward_backward(b: dict) -> None:
        i, m = b["input_ids"].to(dev), b["attention_mask"].to(dev)
        with torch.autocast(device_type=dev.type, dtype=dtype, enabled=dtype is not None):
            if path == "baseline":
                loss = loss_fn(model(b["signal"].to(dev), i, m), i, m)["loss"]
            else:
                out = model(b["signal"].to(dev), i, m, caption_targets_only=True)
                loss = loss_fn(out, i, m, stepper.caption_divisor([b]))["loss"]
        loss.backward()

    compiled = None
    if path.startswith("compiled"):  # installed around its own steps only: the other paths share the model
        from esi.train.compile import compile_model

        compiled = compile_model(model)
        compiled.remove()

    def step(b: dict) -> None:
        if path == "baseline":  # the eager step as it was: no Stepper
            forward_backward(b)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        elif compiled is not None:
            compiled.install()
            try:
                stepper.run(iter([b]))
            finally:
                compiled.remove()
        else:
            stepper.run(iter([b]))
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return step, forward_backward


def _setup(name: str, device: str, batch: int, seq: int, tokens: int, n_batches: int) -> tuple[Any, Any, dict]:
    import torch

    from esi.models import create_model

    torch.manual_seed(0)
    overrides: dict = {}
    note = ""
    if name in ("esi_tiny", "esi_base"):
        overrides = {"text_cfg": {"hf_model_name": "minilm", "context_length": tokens}}
        note = "text tower: MiniLM (BioLinkBERT not available offline)"
    dev = torch.device(device)
    model = create_model(name, **overrides).to(dev).train()
    tokens = min(tokens, model.max_text_len)
    ids, mask = _pool(model, batch * n_batches, tokens, seed=1)
    signals = torch.randn(batch * n_batches, 12, seq)
    info = {"model": name, "note": note, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "batch": batch, "seq": seq, "tokens": tokens, "threads": torch.get_num_threads(),
            "device": device if dev.type == "cpu" else torch.cuda.get_device_name(dev)}
    return model, (ids, mask, signals), info


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def _timed(fn: Callable, b: dict) -> tuple[float, float]:
    """(wall s, process CPU s) of ``fn(b)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(b)
    return time.perf_counter() - t0, time.process_time() - c0


def run_paths(name: str, paths: list[str], device: str, precision: str, batch: int, seq: int, tokens: int,
              steps: int, buckets: int) -> list[dict]:
    """Time ``paths`` on one model, steps interleaved (the matmul peak between rounds), then count each path's
    FLOPs; one row per path."""
    import torch

    from esi.train.flops import flop_counter

    model, (ids, mask, signals), info = _setup(name, device, batch, seq, tokens, steps + 1)
    dtype = torch.bfloat16 if precision == "bf16" else None
    fns = {p: _path(model, p, model.logit_scale.device, dtype) for p in paths}
    data = {p: _batches(ids, mask, signals, batch, buckets if p.endswith("bucketed") else 0) for p in paths}
    times: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
    # warm-up: allocator, kernels, optimizer state; for the compiled path also tracing and code generation
    warmup = {p: _timed(fns[p][0], data[p][0])[0] for p in paths}
    peak = matmul_peak_gflops(device, repeats=5)
    for i in range(1, steps + 1):
        for p in paths:
            times[p].append(_timed(fns[p][0], data[p][i]))
        peak = max(peak, matmul_peak_gflops(device, repeats=3))
    rows = []
    for p in paths:
        counter = flop_counter()
        with counter:
            for b in data[p][1:]:
                fns[p][1](b)
        model.zero_grad(set_to_none=True)
        flops = counter.get_total_flops() / steps
        median = _median([w for w, _ in times[p]])
        rows.append({**info, "path": p, "precision": precision, "step_s": median,
                     "step_s_best": min(w for w, _ in times[p]), "cpu_s": _median([c for _, c in times[p]]),
                     "warmup_s": warmup[p], "samples_per_s": batch / median, "gflops_per_step": flops / 1e9,
                     "gflops_per_s": flops / median / 1e9, "peak_gflops": peak,
                     "tokens_per_batch": sum(int(b["input_ids"].numel()) for b in data[p][1:]) / steps})
    return rows


def peak_memory(name: str, path: str, device: str, precision: str, batch: int, seq: int, tokens: int,
                buckets: int) -> float:
    """Peak memory (MB) of building the model and one step of ``path``: RSS on CPU, allocated on CUDA."""
    import torch

    model, (ids, mask, signals), _ = _setup(name, device, batch, seq, tokens, 1)
    step, _ = _path(model, path, model.logit_scale.device, torch.bfloat16 if precision == "bf16" else None)
    step(_batches(ids, mask, signals, batch, buckets if path.endswith("bucketed") else 0)[0])
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return _rss_mb()


def _sub(args: argparse.Namespace, extra: list[str]) -> Any:
    cmd = [sys.executable, __file__, "--batch", str(args.batch), "--seq", str(args.seq), "--tokens",
           str(args.tokens), "--steps", str(args.steps), "--threads", str(args.threads), "--buckets",
           str(args.buckets), *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rows(args: argparse.Namespace, name: str, paths: list[str], device: str, precision: str) -> list[dict]:
    common = ["--device", device, "--precision", precision, "--paths", ",".join(paths)]
    out = _sub(args, ["--one", name, *common])
    if isinstance(out, dict):
        return [{"model": name, "path": p, "device": device, "precision": precision, **out} for p in paths]
    for row in out:
        mem = None if args.no_memory else _sub(args, ["--memory", name, *common[:4], "--paths", row["path"]])
        row["peak_mem_mb"] = mem if isinstance(mem, float) else float("nan")
    print(f"done: {name} {device}", file=sys.stderr, flush=True)
    return out


def _payback(r: dict, same: list[dict]) -> str:
    """Steps after which the compiled path's warm-up is paid back against ``new`` ("-" for other paths)."""
    new = next((o for o in same if o["path"] == "new"), None)
    if not r["path"].startswith("compiled") or new is None:
        return "-"
    saving = new["step_s"] - r["step_s"]
    return f"{(r['warmup_s'] - r['step_s']) / saving:.0f}" if saving > 0 else "never"


def _table(rows: list[dict]) -> str:
    head = (f"{'model':<9} {'path':<17} {'device':<8} {'prec':<5} {'params':>7} {'tok/batch':>9} {'step s':>7} "
            f"{'cpu s':>6} {'samples/s':>9} {'x base':>6} {'warm-up s':>9} {'payback':>7} {'GFLOP/step':>10} "
            f"{'GFLOP/s':>8} {'peak':>6} {'%peak':>6} {'useful':>6} {'peak MB':>8}")
    lines = [head, "-" * len(head)]
    ok = [r for r in rows if "error" not in r]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<9} {r['path']:<17} {r['device'][:8]:<8} error: {r['error']}")
            continue
        same = [o for o in ok if o["model"] == r["model"]]
        base = next((o for o in same if o["path"] == "baseline"), None)
        ratio = f"{r['samples_per_s'] / base['samples_per_s']:.2f}" if base else "-"
        useful = min(o["gflops_per_step"] for o in same) / r["batch"] * r["samples_per_s"]
        peak = r["peak_gflops"]
        lines.append(
            f"{r['model']:<9} {r['path']:<17} {r['device'][:8]:<8} {r['precision']:<5} {r['params_m']:>6.1f}M "
            f"{r['tokens_per_batch']:>9.0f} {r['step_s']:>7.2f} {r['cpu_s']:>6.2f} {r['samples_per_s']:>9.2f} "
            f"{ratio:>6} {r['warmup_s']:>9.1f} {_payback(r, same):>7} {r['gflops_per_step']:>10.0f} "
            f"{r['gflops_per_s']:>8.0f} {peak:>6.0f} {100 * r['gflops_per_s'] / peak:>5.0f}% "
            f"{100 * useful / peak:>5.0f}% {r['peak_mem_mb']:>8.0f}")
    lines += [f"note: {n}" for n in sorted({f"{r['model']}: {r['note']}" for r in ok if r.get("note")})]
    lines.append("note: step s / cpu s = median wall / process-CPU time of the timed steps (paths interleaved); "
                 "tok/batch = batch x padded caption length; warm-up s = the first step (compiled: tracing and "
                 "code generation), payback = steps until that is repaid against 'new'; peak = GFLOP/s of a "
                 "2048x2048 mm measured between the rounds of steps (best); useful = the fewest FLOPs/sample of "
                 "the paths x samples/s, as a share of that peak")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="esi_test,esi_cpu,esi_tiny", help="CPU configs")
    p.add_argument("--gpu-models", default="esi_tiny,esi_base", help="CUDA configs (bf16)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=5000)
    p.add_argument("--tokens", type=int, default=128, help="longest caption in tokens")
    p.add_argument("--steps", type=int, default=4, help="timed steps per path after one warm-up step")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    p.add_argument("--buckets", type=int, default=8, help="bucketed path: length-grouping window in batches")
    p.add_argument("--paths", default="baseline,new,bucketed,compiled,compiled+bucketed",
                   help="paths to run, side by side")
    p.add_argument("--baseline", action="store_true", help="only today's eager path (--paths baseline)")
    p.add_argument("--no-cpu", action="store_true")
    p.add_argument("--no-memory", action="store_true", help="skip the per-path peak-memory subprocesses")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--memory", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = ["baseline"] if args.baseline else args.paths.split(",")
    if args.one or args.memory:
        if args.one:
            out: Any = run_paths(args.one, paths, args.device, args.precision, args.batch, args.seq, args.tokens,
                                 args.steps, args.buckets)
        else:
            out = peak_memory(args.memory, paths[0], args.device, args.precision, args.batch, args.seq,
                              args.tokens, args.buckets)
        print(json.dumps(out))
        return
    peak = matmul_peak_gflops("cpu")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible, {torch.get_num_threads()} threads; "
          f"fp32 matmul peak at start-up (2048x2048 mm, best of 20): {peak:.0f} GFLOP/s (the table uses the "
          "peak measured during each model's steps)", flush=True)
    rows: list[dict] = []
    if not args.no_cpu:
        rows = [r for name in args.models.split(",") for r in _rows(args, name, paths, "cpu", "fp32")]
        print(_table(rows))
    if torch.cuda.is_available():
        gpu_peak = matmul_peak_gflops("cuda")
        gpu_rows = [r for name in args.gpu_models.split(",") for r in _rows(args, name, paths, "cuda", "bf16")]
        print(f"CUDA bf16 matmul peak (2048x2048 mm, best of 20): {gpu_peak:.0f} GFLOP/s")
        print(_table(gpu_rows))
        rows += gpu_rows
    else:
        print("no CUDA device here: GPU rows (esi_tiny/esi_base bf16) skipped", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
