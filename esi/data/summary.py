"""Summaries of a store for ``esi data info`` (and the run report)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from esi.data.store import EcgStore


def summarize_store(path: str | Path, top: int = 20) -> dict[str, Any]:
    """Counts of records, subjects, sources, folds, raw labels, harmonised conditions, rejects, quarantine."""
    store = EcgStore(path)
    m = store.manifest
    labels: Counter[str] = Counter()
    conditions: Counter[str] = Counter()
    for text in m["labels"]:
        labels.update(json.loads(text).keys())
    for text in m["conditions"]:
        conditions.update(json.loads(text).keys())
    flagged: Counter[str] = Counter()
    for text in (m["flags"] if "flags" in m else []):
        flagged.update(f.split("=", 1)[0] for f in (json.loads(text) if isinstance(text, str) and text else []))
    names = _condition_names(conditions)
    rejects = store.rejects()
    folds = m["fold"].dropna().astype(int).value_counts().sort_index()
    return {
        "store": str(store.path), "records": len(m), "subjects": int(m["subject_id"].nunique()),
        "fs": store.fs, "n_samples": store.n_samples, "leads": store.leads,
        "sources": m["source"].value_counts().to_dict(),
        "folds": {int(k): int(v) for k, v in folds.items()},
        "records_without_fold": int(m["fold"].isna().sum()),
        "sex": m["sex"].fillna("unknown").value_counts().to_dict(),
        "age": {"min": _num(m["age"].min()), "median": _num(m["age"].median()), "max": _num(m["age"].max()),
                "missing": int(m["age"].isna().sum())},
        "nan_filled": int(m["nan_filled"].sum()), "padded": int((m["padded_samples"] > 0).sum()),
        "labels": dict(labels.most_common(top)), "n_distinct_labels": len(labels),
        "conditions": {f"{cid} {names.get(cid, '')}".strip(): n for cid, n in conditions.most_common(top)},
        "n_distinct_conditions": len(conditions),
        "records_without_condition": int(sum(1 for t in m["conditions"] if t in ("{}", ""))),
        "rejects": int(len(rejects)),
        "reject_examples": rejects.head(5).to_dict("records"),
        "quarantined": len(store.quarantined_ids()),
        "flagged": dict(flagged.most_common()),
    }


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _condition_names(conditions: Counter[str]) -> dict[str, str]:
    from esi.conditions.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    out = {}
    for cid in conditions:
        try:
            out[cid] = vocab[cid].name
        except KeyError:
            continue
    return out


def render_summary(summary: dict[str, Any]) -> None:
    """Print a store summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{summary['store']}[/]: {summary['records']} records, {summary['subjects']} subjects, "
                  f"{summary['fs']} Hz x {summary['n_samples']} samples, leads {' '.join(summary['leads'])}")
    console.print(f"sources: {summary['sources']}")
    console.print(f"folds: {summary['folds']} (without fold: {summary['records_without_fold']})")
    console.print(f"sex: {summary['sex']}  age: {summary['age']}")
    console.print(f"NaN-filled: {summary['nan_filled']}  padded: {summary['padded']}  "
                  f"rejects: {summary['rejects']}  quarantined: {summary['quarantined']}")
    if summary.get("flagged"):
        console.print(f"flagged at preparation (kept): {summary['flagged']}")
    for key, title in (("conditions", "harmonised conditions"), ("labels", "raw labels")):
        table = Table(title=f"{title} (top {len(summary[key])} of {summary['n_distinct_' + key]})")
        table.add_column(title)
        table.add_column("records", justify="right")
        for name, count in summary[key].items():
            table.add_row(name, str(count))
        console.print(table)
    if summary["reject_examples"]:
        table = Table(title="rejects (first 5)")
        table.add_column("record_id")
        table.add_column("reason")
        for row in summary["reject_examples"]:
            table.add_row(str(row["record_id"]), str(row["reason"]))
        console.print(table)
