"""Benchmark of the evaluation suite: wall time and embeddings/s of every mode on N synthetic records.

    .venv/bin/python bench/evaluate.py                       # 2 000 records, esi_cpu random init, all modes
    .venv/bin/python bench/evaluate.py --model RUN/model.pt  # a pretrained checkpoint instead
    .venv/bin/python bench/evaluate.py --records 400 --model esi_test --quick
    .venv/bin/python bench/evaluate.py --records 600 --model esi_test --pretrain-epochs 20 --quick
        # first pretrains --model on folds 1-8 of the bench store with `esi caption` captions (offline
        # composer), then evaluates that checkpoint: the zero-shot figures of a model that learned something

The synthetic dataset and its store are kept in --work (re-used on the next run); the embedding cache is
switched off so the encoding throughput is measured every time. Prints one table; --json writes the numbers.

Zero-shot prompt schemes: one run scores both ('caption', the pretraining text, and 'names', the earlier
scheme) and the table prints their AUC side by side, plus the time to build and embed each scheme's prompts
(--prompt-repeats times, so the prompt change's cost is measured, not guessed).
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
    ap.add_argument("--prompt-repeats", type=int, default=3, help="timed prompt builds per scheme")
    ap.add_argument("--pretrain-epochs", type=int, default=0, help="pretrain --model (a config) first (0: no)")
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
    if args.pretrain_epochs:
        args.model = str(_pretrain(args.model, store, args.work, args.pretrain_epochs))

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
    rows["prompt_schemes"] = _prompt_timings(args.model, store, args.task, m, args.prompt_repeats)
    print(result.table)
    print("| measure | value |\n| --- | --- |")
    for k, v in rows.items():
        if k in ("headline", "timings_s", "prompt_schemes"):
            continue
        print(f"| {k} | {v} |")
    for k, v in rows["timings_s"].items():
        print(f"| time: {k} (s) | {v:.1f} |")
    for k, v in rows["prompt_schemes"].items():
        print(f"| zero-shot {k}: macro AUC | {v['macro_auc']:.3f} |")
        print(f"| zero-shot {k}: prompts / build+embed s | {v['n_prompts']} / {v['seconds']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _pretrain(config: str, store: Path, work: Path, epochs: int) -> Path:
    """Pretrain ``config`` on folds 1-8 of ``store`` with offline `esi caption` captions (reused when present)."""
    from esi.cqa.captions import caption_store
    from esi.cqa.llm import OfflineComposer
    from esi.evaluation.prompts import CorpusPassages
    from esi.train.config import PretrainConfig
    from esi.train.loop import pretrain

    run = work / f"pretrain-{config}-{store.name}-{epochs}ep"
    if (run / "model.pt").exists():
        return run / "model.pt"
    captions = work / f"captions-{store.name}.parquet"
    if not captions.exists():
        caption_store(store, captions, kb=CorpusPassages(), generator=OfflineComposer(),
                      cache_path=work / "caption_cache.sqlite", progress=False)
    cfg = PretrainConfig(model=config, store=str(store), captions=str(captions), out=str(run), epochs=epochs,
                         warmup_epochs=1, decay_every=1000, batch_size=32, lr=1e-3, mlflow=False,
                         folds=list(range(1, 9)), num_workers=0, seed=0)
    return pretrain(cfg, progress=True).final_checkpoint


def _prompt_timings(model_ref: str, store: Path, task: str, metrics: dict, repeats: int) -> dict:
    """Per prompt scheme: the run's AUC, the prompt count and the median time to build + embed its prompts."""
    import statistics

    from esi.evaluation.benchmarks import load_benchmark
    from esi.evaluation.prompts import SCHEMES, build_prompts
    from esi.evaluation.run import resolve_model
    from esi.evaluation.zeroshot import class_embeddings

    model, _ = resolve_model(model_ref)
    bench = load_benchmark("synthetic", store, task)
    out = {}
    schemes = metrics["modes"].get("zero_shot", {}).get("schemes", {})
    for scheme in SCHEMES:
        times = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            p = build_prompts(bench, scheme)
            class_embeddings(model, p.texts, p.weights)
            times.append(time.perf_counter() - t)
        out[scheme] = {
            "macro_auc": schemes.get(scheme, {}).get("macro_auc", float("nan")),
            "n_prompts": sum(len(t) for t in p.texts.values()),
            "seconds": statistics.median(times),
        }
    return out


if __name__ == "__main__":
    main()
