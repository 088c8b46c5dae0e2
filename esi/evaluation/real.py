"""The real-ECG benchmark: the evaluation part of the shipped real recordings (see :mod:`esi.data.real_split`).

The evaluation part is small (a few hundred records, single-digit positives for rare classes): every AUC
comes with a bootstrap interval, and the report says how many positives each class had.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from esi.data.real_split import HEADLINE, REAL_ROOT, load_split, part_mask
from esi.errors import EvaluationError

if TYPE_CHECKING:
    from esi.data.store import EcgStore
    from esi.evaluation.benchmarks import Benchmark

__all__ = ["CV_FOLDS", "HEADLINE", "MIN_POSITIVES", "REAL_ROOT", "real_benchmark"]
MIN_POSITIVES = 3  # a class needs this many positives in the evaluation part to be scored
CV_FOLDS = 5


def real_benchmark(store: EcgStore, *, split_path: str | Path | None = None,
                   min_positives: int = MIN_POSITIVES, min_certainty: float = 0.5, part: str = "eval") -> Benchmark:
    """The evaluation part of the real benchmark on a store prepared from ``tests/fixtures/real_benchmark``.

    ``part="pretrain"`` gives the same benchmark on the pretraining part instead: a development set for choices
    made before looking at the evaluation part (bench/zero_shot_rules.py chose the zero-shot score rule on it).

    Classes: the headline conditions first, then every other condition with at least ``min_positives``
    positives among the evaluation records. ``folds`` (1..CV_FOLDS, :func:`esi.evaluation.benchmarks.hash_folds`)
    only place every record in the test split; the linear probe deals its own folds per class
    (:func:`esi.evaluation.real_eval.stratified_folds`).
    """
    from esi.evaluation.benchmarks import Benchmark, _records, _subjects, hash_folds

    split = load_split(split_path)
    rec = _records(store)
    keep = part_mask(rec["record_id"].astype(str), part, split)
    if not keep.any():
        raise EvaluationError(f"store {store.path} holds none of the real benchmark's {part} records; fix: "
                              f"prepare it with 'esi data prepare --source wfdb --root {REAL_ROOT} --out STORE'")
    rec = rec[keep].reset_index(drop=True)
    sets = [{str(k) for k, v in (json.loads(t) if t else {}).items() if v is not None and float(v) >= min_certainty}
            for t in rec["conditions"]]
    counts: dict[str, int] = {}
    for s in sets:
        for c in s:
            counts[c] = counts.get(c, 0) + 1
    others = sorted((c for c, n in counts.items() if n >= min_positives and c not in HEADLINE),
                    key=lambda c: (-counts[c], c))
    classes = [c for c in HEADLINE if counts.get(c, 0) >= min_positives] + others
    dropped = [c for c in HEADLINE if counts.get(c, 0) < min_positives]
    if not classes:
        raise EvaluationError(f"real benchmark: no condition has {min_positives} positives in the {part} part")
    y = np.array([[c in s for c in classes] for s in sets], dtype=np.int8)
    subjects = _subjects(rec)
    from esi.conditions.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    texts = {c: [vocab.name(c)] if c in vocab else [c] for c in classes}
    bench = Benchmark(
        name="real" if part == "eval" else f"real-{part}", task="conditions", store_path=str(store.path),
        class_names=classes,
        indices=rec["index"].to_numpy(np.int64), y=y, folds=hash_folds(subjects, CV_FOLDS), subjects=subjects,
        class_texts=texts, class_members={c: [c] for c in classes}, label_system="conditions",
        dropped_classes=dropped, folds_assigned=True, fold_rule="hash",
        member_counts={c: {c: int(counts[c])} for c in classes},
        train_folds=tuple(range(1, CV_FOLDS + 1)), val_folds=(), test_folds=tuple(range(1, CV_FOLDS + 1)),
    )
    bench.pool_indices, bench.pool_subjects = bench.indices, subjects
    return bench
