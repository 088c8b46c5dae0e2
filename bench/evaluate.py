"""Benchmark of the evaluation suite: wall time and embeddings/s of every mode on N synthetic records.

    .venv/bin/python bench/evaluate.py                       # 2 000 records, esi_cpu random init, all modes
    .venv/bin/python bench/evaluate.py --model RUN/model.pt  # a pretrained checkpoint instead
    .venv/bin/python bench/evaluate.py --records 400 --model esi_test --quick

The synthetic dataset and its store are kept in --work (re-used on the next run); the embedding cache is
switched off so the encoding throughput is measured every time. Prints one table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000, help="synthetic records (5 per subject)")
    ap.add_argument("--model", default="esi_cpu", help="checkpoint, MLflow URI or config name (random init)")
    ap.add_argument("--work", type=Path, default=Path(".esi/bench/evaluate"), help="dataset/store folder")
    ap.add_argument("--task", default="superdiagnostic")
    ap.add_argument("--modes", default="all")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--finetune-steps", type=int, default=None, help="cap of fine-tune steps per epoch")
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 C values, 100 bootstrap resamples")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset
    from esi.evaluation.finetune import FinetuneConfig
    from esi.evaluation.run import evaluate

    per_subject = 5
    subjects = max(1, args.records // per_subject)
    data = args.work / f"synthetic-{subjects}x{per_subject}"
    store = args.work / f"store-{subjects}x{per_subject}"
    t = time.perf_counter()
    if not (data / "ptbxl_database.csv").exists():
        generate_dataset(data, subjects=subjects, records_per_subject=per_subject, seed=0, progress=True)
    if not (store / "header.json").exists() or not json.loads((store / "header.json").read_text()).get(
        "complete"
    ):
        prepare("ptbxl", data, store, progress=True)
    data_s = time.perf_counter() - t

    kw = (
        {"seeds": (0,), "c_grid": (0.01, 1.0), "n_bootstrap": 100}
        if args.quick
        else {"n_bootstrap": args.bootstrap}
    )
    t = time.perf_counter()
    result = evaluate(
        args.model,
        "synthetic",
        store,
        args.task,
        args.modes,
        args.work / "report",
        batch_size=args.batch_size,
        use_cache=False,
        log_mlflow=False,
        finetune_config=FinetuneConfig(epochs=args.finetune_epochs, max_steps_per_epoch=args.finetune_steps),
        **kw,
    )
    wall = time.perf_counter() - t
    m = result.metrics
    tp = m["throughput"]
    rows = {
        "records": m["benchmark"]["records"],
        "model": args.model,
        "wall_s": round(wall, 1),
        "data_prep_s (not in wall)": round(data_s, 1),
        "embeddings_computed": tp["computed"],
        "embeddings_per_s": round(tp["embeddings_per_s"] or 0.0, 1),
        "timings_s": m["timings_s"],
        "torch_threads": torch.get_num_threads(),
        "cpu": f"{platform.processor() or platform.machine()} x{os.cpu_count()}",
        "headline": result.headline(),
    }
    print(result.table)
    print("| measure | value |\n| --- | --- |")
    for k, v in rows.items():
        if k in ("headline", "timings_s"):
            continue
        print(f"| {k} | {v} |")
    for k, v in rows["timings_s"].items():
        print(f"| time: {k} (s) | {v:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
