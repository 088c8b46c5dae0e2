"""Benchmark definitions: which records, which label matrix, which folds (PTB-XL, ICBEB, synthetic, custom).

PTB-XL follows the standard benchmark (Strodthoff et al. 2020): the label tasks come from scp_statements.csv
(all 71 statements, diagnostic 44, subdiagnostic 23 and superdiagnostic 5 through each diagnostic statement's
``diagnostic_subclass`` / ``diagnostic_class``, form 19, rhythm 12). A statement counts whatever its
likelihood (0 included), records without a label for the task are dropped for that task, and folds 1-8 train,
9 validates, 10 tests. The synthetic dataset is written in PTB-XL layout and goes through the same code.
ICBEB uses its 9 classes. When a store carries no folds (ICBEB without the benchmark's fold file, custom
stores), folds are fixed by the data, never by a seed: :func:`hash_folds` puts each subject (a record without a
subject id is its own subject) in fold ``int(sha256("esi-fold-v1:" + key)[:8], 16) % 10 + 1``, so the same
record always lands in the same fold, subject-disjoint, whatever ``--seed`` says. ``custom`` takes any store
with harmonised conditions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from esi.errors import EvaluationError

if TYPE_CHECKING:
    import pandas as pd

    from esi.data.store import EcgStore

log = logging.getLogger(__name__)

SCP_STATEMENTS = Path(__file__).resolve().parent.parent / "data" / "scp_statements.csv"
PTBXL_TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
BENCHMARKS = ("ptbxl", "synthetic", "icbeb", "custom")
TRAIN_FOLDS, VAL_FOLDS, TEST_FOLDS = tuple(range(1, 9)), (9,), (10,)
FOLD_HASH_SALT = "esi-fold-v1:"  # part of the documented fold rule: changing it moves every record

SUPERCLASS_NAMES = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}
SUBCLASS_NAMES = {
    "NORM": "normal ECG",
    "STTC": "ST/T change",
    "NST_": "non-specific ST changes",
    "ISC_": "non-specific ischemia",
    "ISCA": "ischemia in anterior leads",
    "ISCI": "ischemia in inferior leads",
    "AMI": "anterior myocardial infarction",
    "IMI": "inferior myocardial infarction",
    "LMI": "lateral myocardial infarction",
    "PMI": "posterior myocardial infarction",
    "LVH": "left ventricular hypertrophy",
    "RVH": "right ventricular hypertrophy",
    "LAO/LAE": "left atrial overload or enlargement",
    "RAO/RAE": "right atrial overload or enlargement",
    "SEHYP": "septal hypertrophy",
    "LAFB/LPFB": "left anterior or posterior fascicular block",
    "IRBBB": "incomplete right bundle branch block",
    "ILBBB": "incomplete left bundle branch block",
    "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block",
    "_AVB": "atrioventricular block",
    "IVCD": "intraventricular conduction disturbance",
    "WPW": "Wolff-Parkinson-White syndrome",
}

# ICBEB / CPSC 2018: the 9 classes, their names in REFERENCE.csv (label_system 'icbeb') and their SNOMED CT
# codes in the Challenge 2020 form of the same records (label_system 'snomed'; the Challenge scores the
# SNOMED pairs on one line as the same class).
ICBEB_CLASSES = ("NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD", "STE")
ICBEB_NAMES = {
    "NORM": "normal ECG",
    "AFIB": "atrial fibrillation",
    "1AVB": "first degree AV block",
    "CLBBB": "complete left bundle branch block",
    "CRBBB": "complete right bundle branch block",
    "PAC": "premature atrial contraction",
    "VPC": "premature ventricular contraction",
    "STD": "ST depression",
    "STE": "ST elevation",
}
_ICBEB_FROM_REFERENCE = {
    "Normal": "NORM",
    "AF": "AFIB",
    "I-AVB": "1AVB",
    "LBBB": "CLBBB",
    "RBBB": "CRBBB",
    "PAC": "PAC",
    "PVC": "VPC",
    "STD": "STD",
    "STE": "STE",
}
_ICBEB_FROM_SNOMED = {
    "426783006": "NORM",
    "164889003": "AFIB",
    "270492004": "1AVB",
    "164909002": "CLBBB",
    "733534002": "CLBBB",
    "59118001": "CRBBB",
    "713427006": "CRBBB",
    "284470004": "PAC",
    "63593006": "PAC",
    "164884008": "VPC",
    "427172004": "VPC",
    "17338001": "VPC",
    "429622005": "STD",
    "164931005": "STE",
}


@dataclass
class Benchmark:
    """Records, labels and folds of one benchmark task on one store.

    ``indices`` are store rows (one per record), ``y`` the (n, C) 0/1 label matrix aligned with them,
    ``folds`` their fold numbers 1-10. ``class_members`` lists, per class, the raw labels it aggregates
    (used to build zero-shot prompts), ``class_texts`` readable descriptions.
    """

    name: str
    task: str
    store_path: str
    class_names: list[str]
    indices: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    subjects: np.ndarray
    class_texts: dict[str, list[str]] = field(default_factory=dict)
    class_members: dict[str, list[str]] = field(default_factory=dict)
    label_system: str = "scp"
    dropped_classes: list[str] = field(default_factory=list)
    folds_assigned: bool = False
    member_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # training-fold records per member
    fold_rule: str = "store"  # "store" (the data's own folds) or "hash" (see hash_folds)
    # Every usable record of the store in the test folds, whatever the task (the identification pool):
    pool_indices: np.ndarray | None = None
    pool_subjects: np.ndarray | None = None
    train_folds: tuple[int, ...] = TRAIN_FOLDS
    val_folds: tuple[int, ...] = VAL_FOLDS
    test_folds: tuple[int, ...] = TEST_FOLDS

    def mask(self, split: str) -> np.ndarray:
        """Boolean mask over ``indices`` for 'train', 'val' or 'test'."""
        folds = {"train": self.train_folds, "val": self.val_folds, "test": self.test_folds}.get(split)
        if folds is None:
            raise EvaluationError(f"unknown split {split!r}; use train, val or test")
        return np.isin(self.folds, folds)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(store indices, label matrix) of one split."""
        m = self.mask(split)
        return self.indices[m], self.y[m]

    def record_ids(self, store: EcgStore, split: str) -> np.ndarray:
        """Record ids of one split (for provenance checks)."""
        idx, _ = self.split(split)
        return store.manifest["record_id"].astype(str).to_numpy()[idx]

    def summary(self) -> dict:
        counts = {s: int(self.mask(s).sum()) for s in ("train", "val", "test")}
        fold_sizes = {str(f): int(n) for f, n in zip(*np.unique(self.folds, return_counts=True), strict=True)}
        return {
            "fold_sizes": fold_sizes,
            "fold_rule": self.fold_rule,
            "pool_test_records": int(len(self.pool_indices)) if self.pool_indices is not None else None,
            "benchmark": self.name,
            "task": self.task,
            "n_classes": len(self.class_names),
            "classes": self.class_names,
            "records": counts,
            "dropped_classes": self.dropped_classes,
            "folds_assigned": self.folds_assigned,
            "label_system": self.label_system,
            "positives": {c: int(v) for c, v in zip(self.class_names, self.y.sum(0), strict=True)},
        }


# --- PTB-XL label tasks --------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def load_statements(path: str | None = None) -> pd.DataFrame:
    """scp_statements.csv indexed by statement code (the package's copy unless ``path`` is given)."""
    import pandas as pd

    p = Path(path) if path else SCP_STATEMENTS
    if not p.exists():
        raise EvaluationError(f"scp_statements.csv not found at {p}; reinstall ESI or pass the PTB-XL copy")
    df = pd.read_csv(p, index_col=0)
    for col in ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"):
        if col not in df.columns:
            raise EvaluationError(f"{p}: column {col!r} missing; use PTB-XL's scp_statements.csv")
    return df


def ptbxl_task_map(task: str, statements: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """For a PTB-XL task: {class: [SCP statements it aggregates]}, classes in a stable (sorted) order."""
    st = load_statements() if statements is None else statements
    if task not in PTBXL_TASKS:
        raise EvaluationError(f"unknown PTB-XL task {task!r}; choose one of {', '.join(PTBXL_TASKS)}")
    if task == "all":
        codes = list(st.index)
        return {c: [c] for c in sorted(codes)}
    if task in ("form", "rhythm"):
        return {c: [c] for c in sorted(st.index[st[task] == 1.0])}
    diag = st[st["diagnostic"] == 1.0]
    if task == "diagnostic":
        return {c: [c] for c in sorted(diag.index)}
    col = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    groups: dict[str, list[str]] = {}
    for code, cls in diag[col].items():
        groups.setdefault(str(cls), []).append(str(code))
    return {k: sorted(v) for k, v in sorted(groups.items())}


def _ptbxl_texts(task: str, mapping: dict[str, list[str]], st: pd.DataFrame) -> dict[str, list[str]]:
    texts = {}
    for cls, members in mapping.items():
        if task == "superdiagnostic":
            head = [SUPERCLASS_NAMES.get(cls, cls)]
        elif task == "subdiagnostic":
            head = [SUBCLASS_NAMES.get(cls, cls)]
        else:
            head = []
        texts[cls] = head + [str(st.loc[m, "description"]) for m in members]
    return texts


# --- folds by iterative stratification ----------------------------------------------------------------------
def iterative_stratification(
    y: np.ndarray,
    n_folds: int = 10,
    *,
    seed: int = 0,
    groups: Sequence | None = None,
    proportions: Sequence[float] | None = None,
) -> np.ndarray:
    """Assign each row of a multi-label matrix to a fold (0-based) by iterative stratification.

    Sechidis et al. (2011): the rarest label is distributed first, each of its records going to the fold
    that still needs that label most (ties: the fold needing most records, then a seeded random choice).
    With ``groups`` (e.g. subject ids) all rows of a group land in the same fold. ``proportions`` gives
    unequal fold sizes (default equal). Deterministic for a given seed.
    """
    y = (np.asarray(y) > 0.5).astype(np.int64)
    n = len(y)
    rng = np.random.default_rng(seed)
    props = np.full(n_folds, 1.0 / n_folds) if proportions is None else np.asarray(proportions, float)
    if len(props) != n_folds or np.any(props < 0) or props.sum() <= 0:
        raise EvaluationError(f"proportions must be {n_folds} non-negative numbers")
    props = props / props.sum()
    if groups is None:
        gid = np.arange(n)
    else:
        _, gid = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(gid.max()) + 1 if n else 0
    gy = np.zeros((n_groups, y.shape[1]), np.int64)
    np.add.at(gy, gid, y)
    gsize = np.bincount(gid, minlength=n_groups).astype(float)
    need_rows = props * n
    need_lab = props[:, None] * y.sum(0)[None, :].astype(float)
    gfold = np.full(n_groups, -1)
    remaining = gy.copy()
    unassigned = np.ones(n_groups, bool)

    def pick(cands: np.ndarray) -> int:
        best = cands[need_rows[cands] == need_rows[cands].max()]
        return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])

    while True:
        counts = remaining[unassigned].sum(0)
        if not counts.any():
            break
        c = int(np.flatnonzero(counts == counts[counts > 0].min())[0])
        members = np.flatnonzero(unassigned & (remaining[:, c] > 0))
        for g in members[rng.permutation(len(members))]:
            need = need_lab[:, c]
            cands = np.flatnonzero(need == need.max())
            f = pick(cands)
            gfold[g] = f
            unassigned[g] = False
            need_lab[f] -= gy[g]
            need_rows[f] -= gsize[g]
    for g in np.flatnonzero(unassigned)[rng.permutation(int(unassigned.sum()))]:
        f = pick(np.arange(n_folds))
        gfold[g] = f
        need_rows[f] -= gsize[g]
    return gfold[gid]


# --- building a benchmark from a store ----------------------------------------------------------------------
def _records(store: EcgStore) -> pd.DataFrame:
    """One row per record (window 0) that is not quarantined, with its store index in column 'index'."""
    m = store.manifest.copy()
    m["index"] = np.arange(len(m))
    keep = np.zeros(len(m), bool)
    keep[store.indices(exclude_quarantined=True)] = True
    if "window" in m.columns:
        keep &= m["window"].fillna(0).to_numpy() == 0
    return m[keep].reset_index(drop=True)


def _subjects(rec: pd.DataFrame) -> np.ndarray:
    subj = rec["subject_id"].astype(object).to_numpy()
    # A record without a subject id is its own subject (it cannot leak across folds with anyone).
    return np.array(
        [
            str(s) if s is not None and str(s) not in ("", "nan", "None") else f"record:{r}"
            for s, r in zip(subj, rec["record_id"], strict=True)
        ],
        dtype=object,
    )


def hash_folds(keys: Sequence[str], n_folds: int = 10) -> np.ndarray:
    """Folds 1..n_folds fixed by the data: ``int(sha256(FOLD_HASH_SALT + key)[:8], 16) % n_folds + 1``.

    ``keys`` are subject ids (records without one use ``record:<record_id>``), so a subject's records share a
    fold. No seed enters: the same record gets the same fold on every run and machine.
    """
    return fold_hash(keys) % n_folds + 1


def fold_hash(keys: Sequence[str]) -> np.ndarray:
    """``int(sha256(FOLD_HASH_SALT + key)[:8], 16)`` per key: the documented order folds are dealt in."""
    return np.array([int(hashlib.sha256((FOLD_HASH_SALT + str(k)).encode()).hexdigest()[:8], 16) for k in keys],
                    dtype=np.int64)


def _folds(rec: pd.DataFrame, subjects: np.ndarray) -> tuple[np.ndarray, bool]:
    folds = rec["fold"].to_numpy(dtype=float) if "fold" in rec.columns else np.full(len(rec), np.nan)
    if len(folds) and np.isfinite(folds).all() and set(np.unique(folds).astype(int)) <= set(range(1, 11)):
        return folds.astype(int), False
    if np.isfinite(folds).any():
        log.warning("some records have no fold or a fold outside 1-10; assigning hash folds (by subject) to all")
    return hash_folds(subjects), True


def _test_pool(store: EcgStore, test_folds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Store indices and subjects of every usable record in the test folds, labelled or not."""
    rec = _records(store)
    subjects = _subjects(rec)
    folds, _ = _folds(rec, subjects)
    keep = np.isin(folds, list(test_folds))
    return rec["index"].to_numpy(np.int64)[keep], subjects[keep]


def _finish(
    name: str,
    task: str,
    store: EcgStore,
    rec: pd.DataFrame,
    y: np.ndarray,
    classes: list[str],
    texts: dict[str, list[str]],
    members: dict[str, list[str]],
    system: str,
    min_positives: int,
) -> Benchmark:
    keep_rows = y.any(1)  # records without a label for the task are dropped for that task
    rec, y = rec[keep_rows].reset_index(drop=True), y[keep_rows]
    if not len(rec):
        raise EvaluationError(
            f"{name}/{task}: no record of store {store.path} has a label of this task; "
            "check --benchmark/--task against the store's label system"
        )
    present = y.sum(0) >= max(min_positives, 1)
    dropped = [c for c, p in zip(classes, present, strict=True) if not p]
    if dropped:
        log.info(
            "%s/%s: %d class(es) without enough positives dropped: %s",
            name,
            task,
            len(dropped),
            ", ".join(dropped[:10]),
        )
    classes = [c for c, p in zip(classes, present, strict=True) if p]
    y = y[:, present]
    keep_rows = y.any(1)
    rec, y = rec[keep_rows].reset_index(drop=True), y[keep_rows]
    subjects = _subjects(rec)
    folds, assigned = _folds(rec, subjects)
    pool_idx, pool_subj = _test_pool(store, TEST_FOLDS)
    train_pos = y[np.isin(folds, TRAIN_FOLDS)].sum(0)
    member_counts = {c: {m: int(n) for m in members.get(c, [c])} for c, n in zip(classes, train_pos, strict=True)}
    return Benchmark(
        name=name,
        task=task,
        store_path=str(store.path),
        class_names=classes,
        indices=rec["index"].to_numpy(np.int64),
        y=y.astype(np.int8),
        folds=folds,
        subjects=subjects,
        class_texts={c: texts.get(c, [c]) for c in classes},
        class_members={c: members.get(c, [c]) for c in classes},
        label_system=system,
        dropped_classes=dropped,
        folds_assigned=assigned,
        member_counts=member_counts,
        fold_rule="hash" if assigned else "store",
        pool_indices=pool_idx,
        pool_subjects=pool_subj,
    )


def _multi_hot(label_sets: list[set[str]], classes: list[str]) -> np.ndarray:
    pos = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(label_sets), len(classes)), np.int8)
    for r, labels in enumerate(label_sets):
        for lab in labels:
            if lab in pos:
                y[r, pos[lab]] = 1
    return y


def ptbxl_benchmark(
    store: EcgStore,
    task: str = "superdiagnostic",
    *,
    name: str = "ptbxl",
    seed: int = 0,
    min_positives: int = 1,
) -> Benchmark:
    """The PTB-XL benchmark (or the synthetic dataset, written in the same layout) on a store."""
    st = load_statements()
    mapping = ptbxl_task_map(task, st)
    code_to_classes: dict[str, list[str]] = {}
    for cls, members in mapping.items():
        for m in members:
            code_to_classes.setdefault(m, []).append(cls)
    rec = _records(store)
    rec = rec[rec["label_system"] == "scp"].reset_index(drop=True)
    if not len(rec):
        raise EvaluationError(
            f"store {store.path} holds no records with SCP labels (label_system 'scp'); "
            "use --benchmark icbeb or custom for this store"
        )
    sets = []
    for text in rec["labels"]:
        codes = json.loads(text) if text else {}
        sets.append({cls for code in codes for cls in code_to_classes.get(code, ())})
    classes = list(mapping)
    bench = _finish(
        name,
        task,
        store,
        rec,
        _multi_hot(sets, classes),
        classes,
        _ptbxl_texts(task, mapping, st),
        mapping,
        "scp",
        min_positives,
    )
    # How often each member statement occurs in the training folds (weights of the zero-shot prompts).
    labels = store.manifest["labels"].to_numpy()[bench.indices[bench.mask("train")]]
    seen: dict[str, int] = {}
    for text in labels:
        for code in json.loads(text) if text else {}:
            seen[code] = seen.get(code, 0) + 1
    bench.member_counts = {c: {m: seen.get(m, 0) for m in bench.class_members[c]} for c in bench.class_names}
    return bench


def icbeb_labels(label_system: str, labels: dict[str, float]) -> set[str]:
    """The ICBEB classes of one record from its raw labels (REFERENCE.csv names or Challenge SNOMED codes)."""
    table = _ICBEB_FROM_REFERENCE if label_system == "icbeb" else _ICBEB_FROM_SNOMED
    return {table[k] for k, v in labels.items() if k in table and v > 0}


def icbeb_benchmark(
    store: EcgStore, task: str = "all", *, seed: int = 0, min_positives: int = 1
) -> Benchmark:
    """ICBEB / CPSC 2018: 9 classes; the store's folds, else hash folds (:func:`hash_folds`)."""
    if task not in ("all", "icbeb"):
        raise EvaluationError(f"ICBEB has a single task ('all', the 9 classes), not {task!r}")
    rec = _records(store)
    rec = rec[rec["label_system"].isin(["icbeb", "snomed"])].reset_index(drop=True)
    if not len(rec):
        raise EvaluationError(
            f"store {store.path} has no ICBEB (REFERENCE.csv) or Challenge SNOMED labels; "
            "prepare it with --source icbeb or --source challenge"
        )
    sets = [
        icbeb_labels(s, json.loads(t) if t else {})
        for s, t in zip(rec["label_system"], rec["labels"], strict=True)
    ]
    classes = list(ICBEB_CLASSES)
    texts = {c: [ICBEB_NAMES[c]] for c in classes}
    members = {
        "NORM": ["NORM"],
        "AFIB": ["AFIB"],
        "1AVB": ["1AVB"],
        "CLBBB": ["CLBBB"],
        "CRBBB": ["CRBBB"],
        "PAC": ["PAC"],
        "VPC": ["PVC"],
        "STD": ["STD_"],
        "STE": ["STE_"],
    }
    return _finish(
        "icbeb",
        "all",
        store,
        rec,
        _multi_hot(sets, classes),
        classes,
        texts,
        members,
        "scp",
        min_positives,
    )


def custom_benchmark(
    store: EcgStore, task: str = "all", *, seed: int = 0, min_certainty: float = 0.5, min_positives: int = 5
) -> Benchmark:
    """Any store with harmonised conditions: one class per condition id with >= ``min_positives`` records."""
    rec = _records(store)
    sets = []
    for text in rec["conditions"]:
        cond = json.loads(text) if text else {}
        sets.append({str(k) for k, v in cond.items() if v is not None and float(v) >= min_certainty})
    classes = sorted(set().union(*sets)) if sets else []
    if not classes:
        raise EvaluationError(
            f"store {store.path} has no harmonised conditions (column 'conditions'); "
            "prepare it from a labelled source"
        )
    texts: dict[str, list[str]] = {}
    try:
        from esi.conditions.vocabulary import load_vocabulary

        vocab = load_vocabulary()
        for c in classes:
            cond = vocab.get(c)  # an id the vocabulary does not know keeps its id as its text
            texts[c] = [cond.name, *cond.synonyms[:2]] if cond else [c]
    except ImportError:
        texts = {c: [c] for c in classes}
    return _finish(
        "custom",
        task,
        store,
        rec,
        _multi_hot(sets, classes),
        classes,
        texts,
        {c: [c] for c in classes},
        "conditions",
        min_positives,
    )


def load_benchmark(
    name: str,
    store: EcgStore | str | Path,
    task: str | None = None,
    *,
    seed: int = 0,
    min_positives: int | None = None,
) -> Benchmark:
    """Build benchmark ``name`` (ptbxl, synthetic, icbeb, custom) for ``task`` on a store.

    ``seed`` is accepted for old callers and ignored: folds come from the data (the store, else
    :func:`hash_folds`), never from a seed.
    """
    from esi.data.store import EcgStore

    if not isinstance(store, EcgStore):
        store = EcgStore(store)
    kw = {} if min_positives is None else {"min_positives": min_positives}
    if name in ("ptbxl", "synthetic"):
        return ptbxl_benchmark(store, task or "superdiagnostic", name=name, seed=seed, **kw)
    if name == "icbeb":
        return icbeb_benchmark(store, task or "all", seed=seed, **kw)
    if name == "custom":
        return custom_benchmark(store, task or "all", seed=seed, **kw)
    raise EvaluationError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
