"""Throughput and peak memory of one ESI pretraining step (forward + backward + AdamW), per model config.

CPU (always): esi_test, esi_cpu and esi_tiny at batch 8 x 12 leads x 5000 samples, fp32. esi_tiny's text tower
is BioLinkBERT, which cannot be loaded offline: on CPU it is benchmarked with the MiniLM text tower instead
(the ECG encoder, poolers and decoder are esi_tiny's), and the table says so.
CUDA (when available): esi_tiny and esi_base in bf16 autocast, with model FLOPs utilisation (FLOPs of one
step counted by torch.utils.flop_counter.FlopCounterMode, over the GPU's dense bf16 peak).

Each configuration runs in its own subprocess so that the CPU peak resident memory is that model's alone.

    python bench/train_step.py                 # the default table
    python bench/train_step.py --steps 5 --models esi_test,esi_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CAPTION = ("63-year-old male. Sinus rhythm with right bundle branch block: prolonged QRS duration (about 140 "
           "ms), an M-shaped rSR' pattern in V1-V3 and a wide slurred S wave in I and V6; secondary ST-T "
           "changes in the right precordial leads. Normal axis, no signs of ischaemia.")

# Dense bf16 peak (TFLOP/s) by GPU name fragment, for the utilisation column.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "V100": 125.0}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def run_one(name: str, device: str, precision: str, batch: int, seq: int, steps: int, count_flops: bool,
            threads: int) -> dict:
    """Benchmark one config in this process and return its row."""
    import torch

    from esi.losses import CoCaLoss
    from esi.models import create_model
    from esi.train.schedule import build_optimizer

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    note = ""
    overrides: dict = {}
    if name in ("esi_tiny", "esi_base") and device == "cpu":
        overrides = {"text_cfg": {"hf_model_name": "minilm", "context_length": 128}}
        note = "text tower: MiniLM (BioLinkBERT not available offline)"
    try:
        model = create_model(name, **overrides)
    except Exception as exc:  # noqa: BLE001 - e.g. the hub model is not on this machine
        if device == "cuda" and name in ("esi_tiny", "esi_base"):
            overrides = {"text_cfg": {"hf_model_name": "minilm", "context_length": 128}}
            note = f"text tower: MiniLM ({type(exc).__name__} loading BioLinkBERT)"
            model = create_model(name, **overrides)
        else:
            raise
    dev = torch.device(device)
    model.to(dev).train()
    params = sum(p.numel() for p in model.parameters())
    opt = build_optimizer(model, lr=5e-5, weight_decay=0.05)
    loss_fn = CoCaLoss(1.0, 1.0)
    tok = model.tokenize([CAPTION] * batch)
    ids, mask = tok["input_ids"].to(dev), tok["attention_mask"].to(dev)
    ecg = torch.randn(batch, 12, seq, device=dev)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> float:
        ctx = torch.autocast(device_type=dev.type, dtype=dtype) if dtype else _null()
        with ctx:
            out = model(ecg, ids, mask)
            loss = loss_fn(out, ids, mask)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rss_before = _rss_mb()
    step()  # warm-up: allocator, kernels, AdamW state
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / steps
    row = {"model": name, "device": device if dev.type == "cpu" else torch.cuda.get_device_name(dev),
           "precision": precision, "params_m": params / 1e6, "batch": batch, "seq": seq,
           "step_s": seconds, "samples_per_s": batch / seconds, "note": note}
    if dev.type == "cuda":
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        row["peak_mem_mb"] = _rss_mb()
        row["step_mem_mb"] = _rss_mb() - rss_before  # growth of the peak RSS over model creation
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
        row["gflops_per_step"] = flops / 1e9
        row["achieved_tflops"] = flops / seconds / 1e12
        peak = _peak_tflops(row["device"]) if dev.type == "cuda" else None
        if peak:
            row["mfu"] = row["achieved_tflops"] / peak
    return row


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _subprocess_row(args: argparse.Namespace, name: str, device: str, precision: str, flops: bool) -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--device", device, "--precision", precision,
           "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
           "--threads", str(args.threads)] + (["--flops"] if flops else [])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"model": name, "device": device, "precision": precision, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    head = (f"{'model':<10} {'device':<24} {'prec':<5} {'params':>8} {'batch x seq':>12} {'step s':>8} "
            f"{'samples/s':>10} {'peak MB':>9} {'GFLOP/step':>11} {'MFU':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<10} {r['device']:<24} {r['precision']:<5} error: {r['error']}")
            continue
        gf = f"{r['gflops_per_step']:.0f}" if "gflops_per_step" in r else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        lines.append(f"{r['model']:<10} {r['device'][:24]:<24} {r['precision']:<5} {r['params_m']:>7.1f}M "
                     f"{str(r['batch']) + ' x ' + str(r['seq']):>12} {r['step_s']:>8.3f} "
                     f"{r['samples_per_s']:>10.2f} {r['peak_mem_mb']:>9.0f} {gf:>11} {mfu:>6}")
    notes = sorted({f"{r['model']}: {r['note']}" for r in rows if r.get("note")})
    lines += [f"note: {n}" for n in notes]
    if any(r["device"] == "cpu" and "peak_mem_mb" in r for r in rows):
        lines.append("note: CPU peak MB is the benchmark process's peak resident memory (model, AdamW state, "
                     "activations, libraries)")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="esi_test,esi_cpu,esi_tiny", help="CPU configs")
    p.add_argument("--gpu-models", default="esi_tiny,esi_base", help="CUDA configs (bf16)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=5000)
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--flops", action="store_true", help="also count FLOPs on CPU (one extra step)")
    p.add_argument("--no-cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.device, args.precision, args.batch, args.seq, args.steps,
                                 args.flops, args.threads)))
        return
    import torch

    rows = []
    if not args.no_cpu:
        for name in args.models.split(","):
            rows.append(_subprocess_row(args, name, "cpu", "fp32", args.flops))
            print(f"done: {name} cpu", file=sys.stderr, flush=True)
    if torch.cuda.is_available():
        for name in args.gpu_models.split(","):
            rows.append(_subprocess_row(args, name, "cuda", "bf16", True))
            print(f"done: {name} cuda", file=sys.stderr, flush=True)
    else:
        print("no CUDA device here: GPU rows (esi_tiny/esi_base bf16 with MFU) skipped", file=sys.stderr)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible, threads "
          f"{args.threads or torch.get_num_threads()}")
    print(_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
