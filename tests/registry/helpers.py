"""A tiny pretrained run for the registry tests: a labelled store, captions, esi_test pretraining, evaluation.

The store's waveforms depend on their PTB-XL superclass (so the evaluation has something to measure); the run
is one short epoch: the registry tests need a real checkpoint and a real metrics.json, not a good model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CODES = ("NORM", "IMI", "NDT", "IRBBB", "LVH")
TEXT = {"NORM": "normal ECG", "IMI": "inferior myocardial infarction", "NDT": "non-specific T wave changes",
        "IRBBB": "incomplete right bundle branch block", "LVH": "left ventricular hypertrophy"}


def write_labelled_store(path: Path, subjects: int = 30, per_subject: int = 2, n_samples: int = 500,
                         seed: int = 0) -> Path:
    """A complete store (ptbxl labels, folds 1-10) whose signals carry their class; returns its path."""
    from esi.data.store import write_store

    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 500.0
    sigs, rows = [], []
    for s in range(subjects):
        offset = rng.normal(size=(12, 1)) * 0.3
        for r in range(per_subject):
            k = int(rng.integers(len(CODES)))
            x = np.sin(2 * np.pi * (1 + k) * t)[None, :] * (0.2 + 0.1 * k) + offset
            sigs.append(x + rng.normal(scale=0.05, size=(12, n_samples)))
            rows.append({"record_id": f"ptbxl/{s * per_subject + r + 1}", "subject_id": f"p{s}",
                         "fold": s % 10 + 1, "labels": json.dumps({CODES[k]: 100.0}), "source": "synthetic",
                         "age": 60.0, "sex": "M" if s % 2 else "F", "label_system": "scp",
                         "report": TEXT[CODES[k]]})
    header = {"preprocess": {"fs": 500, "duration_s": n_samples / 500, "window": "first", "highpass_hz": 0.5,
                             "lowpass_hz": 100.0, "filter_order": 2},
              "preprocess_digest": "test0000"}
    return write_store(path, rows, np.stack(sigs).astype(np.float32), shard_size=len(rows), header=header)


def write_captions(store: Path, path: Path) -> Path:
    from esi.data.store import EcgStore, atomic_write_parquet

    m = EcgStore(store).manifest
    import pandas as pd

    captions = [f"{r}, {'male' if s == 'M' else 'female'}." for r, s in zip(m["report"], m["sex"], strict=True)]
    atomic_write_parquet(path, pd.DataFrame({"record_id": m["record_id"], "caption": captions}))
    return path


def pretrained_run(work: Path, *, mlflow: bool = True, seed: int = 0) -> tuple[Path, Path, Path]:
    """(run_dir, evaluation_dir, store): esi_test pretrained one epoch on folds 1-8, evaluated on synthetic."""
    from esi.evaluation.run import evaluate
    from esi.train.config import PretrainConfig
    from esi.train.loop import pretrain

    store = write_labelled_store(work / "store", seed=seed)
    captions = write_captions(store, work / "captions.parquet")
    cfg = PretrainConfig(model="esi_test", store=str(store), captions=str(captions), out=str(work / "run"),
                         epochs=1, batch_size=8, lr=1e-3, warmup_epochs=0, decay_every=10, num_workers=0,
                         checkpoint_every_steps=0, folds=list(range(1, 9)), mlflow=mlflow, seed=seed)
    result = pretrain(cfg, progress=False)
    evaluate(str(result.final_checkpoint), "synthetic", store, "superdiagnostic", "zero-shot,linear-probe",
             work / "evaluation", fractions=(1.0,), seeds=(0,), c_grid=(1.0,), n_bootstrap=20, progress=False,
             log_mlflow=False, use_cache=False)
    return result.run_dir, work / "evaluation", store
