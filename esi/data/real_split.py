"""The fixed split of the real-ECG benchmark records: which may be pretrained on, which are only evaluated.

The records live in ``tests/fixtures/real_benchmark`` (CPSC 2018, Chapman-Shaoxing, Georgia, Ningbo, PTB-XL in
Challenge form, LUDB; each folder's PROVENANCE.md says where it came from). ``split.csv`` there assigns every
record to ``pretrain`` (may be mixed into pretraining) or ``eval`` (never trained on). The split was made
once by :func:`make_split` and is committed: the rule is deterministic (no seed), but the file, not the rule,
is the benchmark's definition, so adding records to the folder never moves existing ones.

Records are matched by their key: the record's path below the benchmark root (``ludb/17``), i.e. the store's
record id without its first component (the name of the folder ``esi data prepare --root`` was given).
This module sits in the data layer so that pretraining can exclude the evaluation part without importing
the evaluation package.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from esi.errors import DataError

REAL_ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real_benchmark"
SPLIT_FILE = REAL_ROOT / "split.csv"
PARTS = ("pretrain", "eval")
SPLIT_SALT = "esi-real-split-v1:"
# The conditions the benchmark is judged on and the split balances (AF, RBBB, LBBB, 1AVB), in report order.
HEADLINE = {"164889003": "AF", "59118001": "RBBB", "164909002": "LBBB", "270492004": "1AVB"}


def record_key(record_id: str) -> str:
    """'real_benchmark/ludb/17' -> 'ludb/17' (the record's path below the benchmark root)."""
    parts = str(record_id).split("/", 1)
    return parts[1] if len(parts) == 2 else parts[0]


def _hash(key: str) -> str:
    return hashlib.sha256((SPLIT_SALT + key).encode()).hexdigest()


def make_split(conditions: Mapping[str, Iterable[str]], headline: Iterable[str] = HEADLINE) -> dict[str, str]:
    """Assign each record key to 'pretrain' or 'eval'.

    Rule: the headline conditions are taken rarest first; the still unassigned records carrying one are
    ordered by ``sha256(SPLIT_SALT + key)`` and alternate eval, pretrain, eval... (so the evaluation part
    gets the odd one out). Every other record goes to eval when the first hex digit of its hash is even.
    """
    held = {k: set(v) for k, v in conditions.items()}
    counts = {c: sum(c in v for v in held.values()) for c in headline}
    parts: dict[str, str] = {}
    for cond in sorted(counts, key=lambda c: (counts[c], c)):
        carriers = sorted((k for k, v in held.items() if cond in v and k not in parts), key=_hash)
        for i, key in enumerate(carriers):
            parts[key] = PARTS[1] if i % 2 == 0 else PARTS[0]
    for key in held:
        if key not in parts:
            parts[key] = PARTS[1] if int(_hash(key)[0], 16) % 2 == 0 else PARTS[0]
    return dict(sorted(parts.items()))


def write_split(parts: Mapping[str, str], path: str | Path = SPLIT_FILE) -> Path:
    """Write ``record,part`` rows (atomically)."""
    from esi.data.store import atomic_write_bytes

    lines = ["record,part"] + [f"{k},{v}" for k, v in sorted(parts.items())]
    path = Path(path)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def load_split(path: str | Path | None = None) -> dict[str, str]:
    """``record key -> part`` from a split file (default: the shipped ``split.csv``)."""
    path = Path(path) if path else SPLIT_FILE
    if not path.is_file():
        raise DataError(f"real-benchmark split file {path} not found", path=str(path),
                        fix="restore tests/fixtures/real_benchmark/split.csv from the source tree")
    parts: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != ["record", "part"]:
            raise DataError(f"{path}: header must be 'record,part', not {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            key, part = (row["record"] or "").strip(), (row["part"] or "").strip()
            if not key or part not in PARTS:
                raise DataError(f"{path} line {lineno}: part {part!r} of {key!r} must be one of "
                                      f"{', '.join(PARTS)}")
            if key in parts:
                raise DataError(f"{path} line {lineno}: record {key!r} is listed twice")
            parts[key] = part
    return parts


def part_of(record_id: str, split: Mapping[str, str]) -> str | None:
    """The part of a record id: the split entry equal to the id or to one of its path suffixes.

    'real_benchmark/ludb/17', 'ludb/17' and 'mine/real_benchmark/ludb/17' all find 'ludb/17', whatever name
    the prepared folder had.
    """
    text = str(record_id)
    while True:
        if text in split:
            return split[text]
        if "/" not in text:
            return None
        text = text.split("/", 1)[1]


def part_mask(record_ids: Iterable[str], part: str, split: Mapping[str, str] | None = None) -> np.ndarray:
    """Boolean mask of the record ids that the split puts in ``part`` (see :func:`part_of`).

    Records the split does not list are in neither part (they are never evaluated on, and never mixed into
    pretraining as benchmark records).
    """
    if part not in PARTS:
        raise DataError(f"unknown part {part!r}; use one of {', '.join(PARTS)}")
    split = load_split() if split is None else split
    return np.array([part_of(r, split) == part for r in record_ids], dtype=bool)
