"""Listing registered versions: aliases, validation status, key metrics, creation time, digest."""

from __future__ import annotations

import time
from typing import Any

from esi.registry.metrics import metrics_from_tags
from esi.registry.tracking import client


def list_versions(name: str | None = None, *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every version (of ``name``, or of all registered models), newest first, as plain dicts."""
    mlc = client(tracking_uri)
    versions = mlc.search_model_versions(f"name='{name}'" if name else None)
    # The SQL store's version search leaves aliases out: take them from the registered models.
    aliases: dict[tuple[str, int], list[str]] = {}
    for model in {mv.name for mv in versions}:
        for alias, v in (mlc.get_registered_model(model).aliases or {}).items():
            aliases.setdefault((model, int(v)), []).append(alias)
    rows = []
    for mv in versions:
        tags = dict(mv.tags or {})
        created = (mv.creation_timestamp or 0) / 1000
        rows.append({
            "name": mv.name, "version": int(mv.version), "aliases": sorted(aliases.get((mv.name, int(mv.version)), [])),
            "validation_status": tags.get("validation_status", "not validated"),
            "validation_target": tags.get("validation_target"), "validated_at": tags.get("validated_at"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)) if created else None,
            "digest": tags.get("checkpoint_digest"), "model_config": tags.get("model_config"),
            "reference_records": int(tags.get("reference_records", 0) or 0),
            "data_store_digest": tags.get("data.store_digest"), "metrics": metrics_from_tags(tags),
            "model_uri": f"models:/{mv.name}/{mv.version}", "run_id": mv.run_id,
        })
    return sorted(rows, key=lambda r: (r["name"], -r["version"]))


def key_metrics(rows: list[dict[str, Any]], gates: list[str], limit: int = 3) -> list[str]:
    """The metric columns of the table: the default gates' metrics, else the most common ones."""
    from esi.registry.promotion import parse_gate

    names = list(dict.fromkeys(parse_gate(g)["metric"] for g in gates))
    if names:
        return names[:limit]
    counts: dict[str, int] = {}
    for r in rows:
        for k in r["metrics"]:
            if k.endswith(("macro_auc", "top1_accuracy")):
                counts[k] = counts.get(k, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:limit]
