"""Transfer to real ECGs: pretrain `make run`'s configuration under several variants, score each on the real benchmark.

Reuses a finished `make run` folder (its synthetic store, captions and knowledge base), prepares and captions the
shipped real-benchmark records once, then for each variant pretrains esi_cpu with `make run`'s settings and
evaluates it on the real benchmark's evaluation part (zero-shot per condition, 5-fold CV linear probe, the
random-init probe). Prints one ablation table, measured in one run:

    python bench/real_transfer.py --run .esi/run --variants baseline,augment,mix,mix+augment

Variants: baseline (generator v1, today's augmentation), augment (+ the real-recording artefacts), mix (+ the
benchmark's pretraining part mixed in), mix+augment, none (no augmentation at all), and v2, v2+mix,
v2+augment, v2+mix+augment (the generator calibrated to real recordings, `realism="v2"`), v2+subjects (300
subjects x 2 records instead of 120 x 5), v2+200x5 (1000 records), v3 (v2 with session variation: electrode
placement and noise levels redrawn per record), v2e (headline conditions 3x as common), v2+seed1 (another
pretraining seed; v2+seed2 a third), v2+lr2x (lr 1e-3), v2+cap0.25 (caption loss weight 0.25), v2+frz3 (the ECG
encoder's first 3 stages kept at their initial weights, make run's recipe; +seed1, +seed2), v2+frz2; NAME@E trains
E epochs instead of `--epochs`. Zero-shot figures use the default contrast score rule; `bench/zero_shot_rules.py`
compares the rules on the same checkpoints. Each pretraining takes minutes on 2 cores; results are cached per
variant folder (delete it to re-run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from esi.data.real_split import HEADLINE, REAL_ROOT

REAL_AUGMENT = {"lead_scale": 0.15, "baseline_wander": 0.15, "powerline": 0.05, "emg": 0.03, "lead_dropout": 0.05,
                "probability": 0.5}
VARIANTS = {  # realism: the synthetic generator's calibration profile (v1: the `--run` folder's own store)
    "none": {"augment": "off", "mix": False, "realism": "v1"},
    "baseline": {"augment": {}, "mix": False, "realism": "v1"},
    "augment": {"augment": REAL_AUGMENT, "mix": False, "realism": "v1"},
    "mix": {"augment": {}, "mix": True, "realism": "v1"},
    "mix+augment": {"augment": REAL_AUGMENT, "mix": True, "realism": "v1"},
    "v2": {"augment": {}, "mix": False, "realism": "v2"},
    "v2+mix": {"augment": {}, "mix": True, "realism": "v2"},
    "v2+augment": {"augment": REAL_AUGMENT, "mix": False, "realism": "v2"},
    "v2+mix+augment": {"augment": REAL_AUGMENT, "mix": True, "realism": "v2"},
    # the same 600 records and steps, from 300 subjects x 2 records instead of 120 x 5: more morphologies
    "v2+subjects": {"augment": {}, "mix": False, "realism": "v2", "subjects": (300, 2)},
    # v2 with electrode placement and noise levels varying between a subject's records (sessions)
    "v3": {"augment": {}, "mix": False, "realism": "v3"},
    "v2e": {"augment": {}, "mix": False, "realism": "v2e"},
    "v2+seed1": {"augment": {}, "mix": False, "realism": "v2", "seed": 1},
    "v2+seed2": {"augment": {}, "mix": False, "realism": "v2", "seed": 2},
    "v2+lr2x": {"augment": {}, "mix": False, "realism": "v2", "lr": 1e-3},
    "v2+200x5": {"augment": {}, "mix": False, "realism": "v2", "subjects": (200, 5)},
    "v2+cap0.25": {"augment": {}, "mix": False, "realism": "v2", "lambda_cap": 0.25},
    # the ECG encoder's first 3 of 4 stages kept at their initial weights (make run's recipe since stop 13)
    "v2+frz3": {"augment": {}, "mix": False, "realism": "v2", "freeze": 3},
    "v2+frz3+seed1": {"augment": {}, "mix": False, "realism": "v2", "freeze": 3, "seed": 1},
    "v2+frz3+seed2": {"augment": {}, "mix": False, "realism": "v2", "freeze": 3, "seed": 2},
    "v2+frz2": {"augment": {}, "mix": False, "realism": "v2", "freeze": 2},
}


def _spec(variant: str, epochs: int) -> tuple[dict, int, str]:
    """(settings, epochs, folder name) of ``NAME`` or ``NAME@EPOCHS`` (e.g. ``v2@6``: twice make run's epochs)."""
    name, _, n = variant.partition("@")
    if name not in VARIANTS or (n and not n.isdigit()):
        raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)} (optionally @EPOCHS)")
    return VARIANTS[name], int(n) if n else epochs, variant.replace("+", "_").replace("@", "_e")


def _real_data(out: Path, kb: Path) -> tuple[Path, Path]:
    from esi.cqa.captions import caption_store
    from esi.data.prepare import prepare

    store, captions = out / "real_store", out / "real_captions.parquet"
    if not (store / "header.json").exists():
        prepare("wfdb", REAL_ROOT, store, progress=False)
    if not captions.exists():
        caption_store(store, captions, kb_dir=kb, cache_path=out / "real_caption_cache.sqlite", progress=False)
    return store, captions


def _synthetic(run: Path, out: Path, realism: str, subjects: tuple[int, int] = (120, 5)) -> tuple[Path, Path]:
    """The synthetic store and captions of a generator profile: the run's own (v1), or generated like `make run`'s
    (``subjects``: subjects x records per subject)."""
    if realism == "v1":
        return run / "store", run / "captions.parquet"
    from esi.cqa.captions import caption_store
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset

    suffix = "" if subjects == (120, 5) else f"_{subjects[0]}x{subjects[1]}"
    folder = out / f"synthetic_{realism}{suffix}"
    store, captions = folder / "store", folder / "captions.parquet"
    if not captions.exists():
        generate_dataset(folder / "dataset", subjects=subjects[0], records_per_subject=subjects[1], seed=0,
                         realism=realism, progress=False)
        prepare("ptbxl", folder / "dataset", store, progress=False, shard_size=500)
        caption_store(store, captions, kb_dir=run / "kb", cache_path=out / "real_caption_cache.sqlite",
                      progress=False)
    return store, captions


def _pretrain(run: Path, out: Path, variant: str, real: tuple[Path, Path], epochs: int) -> tuple[Path, float]:
    from esi.train.config import AugmentConfig, PretrainConfig
    from esi.train.loop import pretrain

    spec, epochs, name = _spec(variant, epochs)
    folder = out / name
    final = folder / "model.pt"
    timing = folder / "bench_seconds.json"
    if final.exists() and timing.exists():
        return final, json.loads(timing.read_text())["pretrain_s"]
    augment = AugmentConfig.disabled() if spec["augment"] == "off" else AugmentConfig(**spec["augment"])
    store, captions = _synthetic(run, out, spec["realism"], spec.get("subjects", (120, 5)))
    cfg = PretrainConfig(model="esi_cpu", store=str(store), captions=str(captions),
                         out=str(folder), epochs=epochs, batch_size=16, warmup_epochs=min(1, epochs),
                         decay_every=max(1, epochs), lr=spec.get("lr", 5e-4), seed=spec.get("seed", 0),
                         lambda_cap=spec.get("lambda_cap", 1.0), resume=True, folds=list(range(1, 9)),
                         freeze_ecg_stages=spec.get("freeze", 0),
                         augment=augment, mlflow=False,
                         mix=[{"store": str(real[0]), "captions": str(real[1])}] if spec["mix"] else [])
    t0 = time.perf_counter()
    r = pretrain(cfg, progress=False)
    seconds = time.perf_counter() - t0
    timing.write_text(json.dumps({"pretrain_s": seconds, "samples_per_s": r.samples_per_s}))
    return Path(r.final_checkpoint), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path(".esi/run"), help="a finished `make run` folder")
    ap.add_argument("--out", type=Path, default=Path(".esi/bench/real_transfer"))
    ap.add_argument("--variants", default="baseline,augment,mix,mix+augment")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    from esi.evaluation.real_eval import evaluate_real

    args.out.mkdir(parents=True, exist_ok=True)
    real = _real_data(args.out, args.run / "kb")
    rows = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        _spec(variant, args.epochs)  # an unknown name stops before any work
        ckpt, seconds = _pretrain(args.run, args.out, variant, real, args.epochs)
        r = evaluate_real(str(ckpt), real[0], args.out / f"eval_{_spec(variant, args.epochs)[2]}", progress=False,
                          n_bootstrap=args.bootstrap, kb_dir=args.run / "kb")
        m = r.metrics["modes"]
        rows.append((variant, seconds, m))
        print(f"{variant}: zero-shot {m['zero_shot']['macro_auc']:.3f}, probe {m['linear_probe']['macro_auc']:.3f}, "
              f"random-init probe {m['linear_probe_random_init']['macro_auc']:.3f} ({seconds:.0f} s pretraining)",
              flush=True)
    names = list(HEADLINE.values())
    print("\n| variant | pretrain s | zero-shot mean | " + " | ".join(f"ZS {n}" for n in names)
          + " | probe mean | random-init probe mean | zero-shot names-prompts |")
    print("|---|---|---|" + "---|" * len(names) + "---|---|---|")
    for variant, seconds, m in rows:
        zs = m["zero_shot"]
        per = [zs["per_class_auc"].get(c) for c in HEADLINE]
        cells = " | ".join("-" if v is None else f"{v:.3f}" for v in per)
        print(f"| {variant} | {seconds:.0f} | {zs['macro_auc']:.3f} | {cells} | {m['linear_probe']['macro_auc']:.3f} | "
              f"{m['linear_probe_random_init']['macro_auc']:.3f} | {zs['schemes']['names']['macro_auc']:.3f} |")


if __name__ == "__main__":
    main()
