"""Does pretraining help 1-shot identification? Pretrained esi_test against random inits, on the same pairs.

    .venv/bin/python bench/identification.py                         # pretraining seeds 0,1,2 on v3, ~10 min
    .venv/bin/python bench/identification.py --pretrain v1,v3 --seeds 0 --tests v1,v3

For every pretraining profile and seed: 120 subjects x 4 records of the generator, captioned as `esi caption`
writes them (offline composer), esi_test pretrained for --epochs on folds 1-8 as tests/evaluation/test_end_to_end.py
does. Every checkpoint and --random-seeds random inits of the same architecture then identify 100 unseen subjects x
2 records (generator seeds 1 and 2) of each --tests profile. v1/v2 keep a subject's electrode placement and noise
habits fixed across records; v3 redraws them per session (docs/data.md). Prints one table of top-1 accuracy and
one-vs-rest AUC; checkpoints and stores are kept in --work and re-used.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _store(work: Path, realism: str, subjects: int, per_subject: int, seed: int) -> Path:
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset

    folder = work / f"{realism}_{subjects}x{per_subject}_s{seed}"
    if not (folder / "store" / "header.json").exists():
        generate_dataset(folder / "synth", subjects=subjects, records_per_subject=per_subject, seed=seed,
                         progress=False, realism=realism)
        prepare("ptbxl", folder / "synth", folder / "store", progress=False)
    return folder / "store"


def _pretrained(work: Path, realism: str, seed: int, epochs: int) -> tuple[Path, float]:
    from esi.cqa.captions import caption_store
    from esi.cqa.llm import OfflineComposer
    from esi.evaluation.prompts import CorpusPassages
    from esi.train.config import PretrainConfig
    from esi.train.loop import pretrain

    store = _store(work, realism, 120, 4, 0)
    captions = store.parent / "captions.parquet"
    if not captions.exists():
        caption_store(store, captions, kb=CorpusPassages(), generator=OfflineComposer(),
                      cache_path=store.parent / "caption_cache.sqlite", progress=False)
    out = store.parent / f"run_s{seed}_e{epochs}"
    timing = out / "bench_seconds.json"
    if (out / "model.pt").exists() and timing.exists():
        return out / "model.pt", json.loads(timing.read_text())["pretrain_s"]
    t0 = time.perf_counter()
    r = pretrain(PretrainConfig(model="esi_test", store=str(store), captions=str(captions), out=str(out),
                                epochs=epochs, warmup_epochs=1, decay_every=1000, batch_size=32, lr=1e-3,
                                mlflow=False, folds=list(range(1, 9)), num_workers=0, seed=seed), progress=False)
    seconds = time.perf_counter() - t0
    timing.write_text(json.dumps({"pretrain_s": seconds}))
    return Path(r.final_checkpoint), seconds


def _identify(model, store_path: Path) -> tuple[float, float]:
    from esi.data.store import EcgStore
    from esi.evaluation.embed import EmbeddingCache
    from esi.evaluation.identification import identification

    store = EcgStore(store_path)
    idx = store.indices()
    subjects = store.manifest["subject_id"].astype(str).to_numpy()[idx]
    r = identification(EmbeddingCache(enabled=False), model, store, idx, subjects, benchmark="synthetic",
                       progress=False)
    return r["top1_accuracy"], r["macro_auc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(".esi/bench/identification"))
    ap.add_argument("--pretrain", default="v3", help="generator profiles to pretrain on, comma-separated")
    ap.add_argument("--seeds", default="0,1,2", help="pretraining seeds")
    ap.add_argument("--tests", default="v3", help="generator profiles of the unseen test subjects")
    ap.add_argument("--test-seeds", default="1,2", help="generator seeds of the test subjects")
    ap.add_argument("--random-seeds", default="0,1,2,3,4")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from esi.evaluation.run import random_init_like
    from esi.models.checkpoint import load_model

    split = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    tests = [(p, int(s), _store(args.work, p, 100, 2, int(s)))
             for p in split(args.tests) for s in split(args.test_seeds)]
    rows, template = [], None
    for realism in split(args.pretrain):
        for seed in (int(s) for s in split(args.seeds)):
            ckpt, seconds = _pretrained(args.work, realism, seed, args.epochs)
            model = load_model(ckpt)
            template = template or model  # random inits: the architecture, not the weights
            for test, test_seed, store in tests:
                top1, auc = _identify(model, store)
                rows.append((f"pretrained on {realism}, seed {seed} ({seconds:.0f} s)", (test, test_seed), top1, auc))
                print(rows[-1], flush=True)
    random = {}
    for test, test_seed, store in tests:
        for s in (int(x) for x in split(args.random_seeds)):
            random.setdefault((test, test_seed), []).append(_identify(random_init_like(template, s), store))
    print("\n| model | test subjects | top-1 | AUC | random init top-1 (min-max, mean) "
          "| random init AUC (min-max, mean) |")
    print("|---|---|---|---|---|---|")
    for name, test, top1, auc in rows:
        rnd = np.array(random[test])
        print(f"| {name} | {test[0]}, seed {test[1]} | {top1:.2f} | {auc:.3f} "
              f"| {rnd[:, 0].min():.2f}-{rnd[:, 0].max():.2f}, {rnd[:, 0].mean():.2f} "
              f"| {rnd[:, 1].min():.3f}-{rnd[:, 1].max():.3f}, {rnd[:, 1].mean():.3f} |")


if __name__ == "__main__":
    main()
