"""The model card: Markdown written at registration from the checkpoint, the store and the evaluations.

Every number in it comes from a file (the checkpoint, the store header and manifest, the evaluations'
metrics.json): nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# MLflow's SQL store keeps a version description of up to 5000 characters; the full card is an artifact.
DESCRIPTION_LIMIT = 5000


def store_provenance(store_path: str | Path | None, folds: list[int] | None,
                     mix: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """What the model was pretrained on: sources and counts, folds, preprocessing, digest; or why unknown.

    ``mix``: the config's mixed-in stores (their records minus the real benchmark's evaluation part count as
    pretraining data too, under ``<source> (mixed in)``)."""
    import hashlib

    from esi.data.store import open_store
    from esi.errors import EsiError

    info: dict[str, Any] = {"store": str(store_path) if store_path else None, "folds": folds, "available": False}
    if not store_path:
        info["missing"] = "the checkpoint does not name its store"
        return info
    try:
        store = open_store(store_path)
        manifest = store.manifest
    except (EsiError, OSError) as exc:
        info["missing"] = f"store {store_path} is not readable here ({exc})"
        return info
    idx = store.indices(folds=folds)
    used = manifest.iloc[idx]
    h = hashlib.sha256()
    for name in ("manifest.parquet", "quarantine.parquet"):
        if (store.path / name).exists():
            h.update(name.encode() + (store.path / name).read_bytes())
    stable = {k: store.header.get(k) for k in ("schema_version", "fs", "n_samples", "leads", "preprocess",
                                                "n_records")}
    h.update(json.dumps(stable, sort_keys=True, default=str).encode())
    plan = store.header.get("plan") or {}
    root = plan.get("root")
    generator = None
    if root and (Path(root) / "synthetic.json").is_file():
        try:
            generator = json.loads((Path(root) / "synthetic.json").read_text()).get("generator", "synthetic")
        except (OSError, json.JSONDecodeError):
            generator = "synthetic"
    sources = {str(k): int(v) for k, v in used["source"].value_counts().sort_index().items()}
    synthetic_only = bool(generator) or (bool(sources) and set(sources) == {"synthetic"})
    info.update(
        available=True, store=str(store.path), store_digest=h.hexdigest()[:20], n_records=int(len(idx)),
        n_store_records=int(len(store)), n_quarantined=len(store.quarantined_ids()), sources=sources,
        folds_present=sorted(int(f) for f in used["fold"].dropna().unique()), fs=store.fs,
        n_samples=store.n_samples, duration_s=store.n_samples / store.fs, preprocess=store.header.get("preprocess")
        or {}, preprocess_digest=store.header.get("preprocess_digest"), plan_source=plan.get("source"),
        plan_root=root, generator=generator, synthetic_only=synthetic_only,
        n_subjects=int(used["subject_id"].nunique()) if "subject_id" in used else None,
    )
    for entry in mix or []:
        _add_mixed(info, entry.get("store"))
    return info


def _add_mixed(info: dict[str, Any], store_path: str | None) -> None:
    """Count a mixed-in store's pretraining records into the provenance (or say it could not be read)."""
    from esi.data.real_split import part_mask
    from esi.data.store import open_store
    from esi.errors import EsiError

    try:
        store = open_store(store_path)
    except (EsiError, OSError, TypeError) as exc:
        info.setdefault("mix_missing", []).append(f"{store_path}: {exc}")
        return
    used = store.manifest.iloc[store.indices()]
    used = used[~part_mask(used["record_id"].astype(str), "eval")]
    for src, n in used["source"].value_counts().sort_index().items():
        key = f"{src} (mixed in)"
        info["sources"][key] = info["sources"].get(key, 0) + int(n)
    info["n_records"] = int(info["n_records"]) + int(len(used))
    info.setdefault("mix", []).append({"store": str(store.path), "n_records": int(len(used))})
    if len(used) and set(used["source"]) != {"synthetic"}:
        info["synthetic_only"] = False


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _data_section(data: dict[str, Any], pretrain: dict[str, Any]) -> list[str]:
    lines = ["## Pretraining data", ""]
    if not data.get("available"):
        return lines + [f"Unknown: {data.get('missing', 'no store recorded')}. Store recorded in the checkpoint: "
                        f"`{data.get('store')}`, folds {data.get('folds') or 'all'}.", ""]
    folds = data["folds"] or "all"
    lines += ["| source | records |", "| --- | --- |"]
    lines += [f"| {src} | {n} |" for src, n in data["sources"].items()]
    lines += ["", f"- store `{data['store']}` (digest {data['store_digest']}): {data['n_records']} records of "
              f"{data['n_store_records']} used, from {data['n_subjects']} subjects",
              f"- folds used for pretraining: {folds} (present: {data['folds_present']}); "
              f"{data['n_quarantined']} quarantined records excluded",
              f"- captions: `{pretrain.get('captions')}`"]
    if data.get("plan_source"):
        lines.append(f"- prepared from `{data.get('plan_root')}` as source `{data['plan_source']}`"
                     + (f" (generated by {data['generator']})" if data.get("generator") else ""))
    pre = data.get("preprocess") or {}
    lines += ["", "## Preprocessing", "",
              f"- rate {data['fs']} Hz, window {data['duration_s']:g} s ({data['n_samples']} samples, "
              f"policy {pre.get('window', '-')}), 12 leads in the standard order, mV",
              f"- filters: high-pass {_fmt(pre.get('highpass_hz'))} Hz, low-pass {_fmt(pre.get('lowpass_hz'))} Hz "
              f"(Butterworth order {pre.get('filter_order', '-')}, zero-phase); preprocessing digest "
              f"{data.get('preprocess_digest') or '-'}", ""]
    return lines


def _model_section(config: dict[str, Any], n_params: int, n_trainable: int, pretrain: dict[str, Any]) -> list[str]:
    ecg, txt, mm = config["ecg_cfg"], config["text_cfg"], config["multimodal_cfg"]
    cfg = pretrain.get("config") or {}
    return ["## Model", "",
            f"- config `{config.get('name')}`: {n_params:,} parameters ({n_trainable:,} trainable during pretraining)",
            f"- ECG encoder `{ecg['encoder']}` ({ecg['in_chans']} leads, {ecg['fs']} Hz, {ecg['seq_len']} samples), "
            f"embedding dimension {config['embed_dim']}",
            f"- text tower `{txt['hf_model_name']}` ({txt.get('pooling')} pooling, "
            f"context {txt.get('context_length')})",
            f"- caption decoder: {mm['layers']} layers, width {mm['width']}, {mm['n_queries']} ECG queries",
            f"- pretraining: {pretrain.get('epoch')} epoch(s), {pretrain.get('step')} steps "
            f"({'completed' if pretrain.get('completed') else 'stopped early'}), batch {cfg.get('batch_size')}, "
            f"lr {cfg.get('lr')}, lambda_con {cfg.get('lambda_con')}, lambda_cap {cfg.get('lambda_cap')}, "
            f"seed {cfg.get('seed')}", ""]


def _evaluation_section(rows: list[dict[str, Any]], sources: list[str]) -> list[str]:
    lines = ["## Evaluation", ""]
    if not rows:
        return lines + ["No evaluation was attached at registration (esi register --evaluation EVAL_DIR).", ""]
    lines += ["| benchmark | task | mode | metric | value | 95% CI |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ci = f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]" if r["ci95"] else "-"
        lines.append(f"| {r['benchmark']} | {r['task']} | {r['mode']} | {r['metric']} | {r['value']:.4f} | {ci} |")
    lines += ["", "Metric names on the version: `<benchmark>.<task>.<mode>.<metric>`. From: "
              + ", ".join(f"`{s}`" for s in sources), ""]
    return lines


def _limitations(data: dict[str, Any], pretrain: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    out = []
    if data.get("synthetic_only"):
        out.append("Pretrained on synthetic data only (" + (data.get("generator") or "source 'synthetic'")
                   + "): the embeddings describe simulated waveforms; evaluate on real recordings before any use.")
    elif not data.get("available"):
        out.append("The pretraining data could not be inspected at registration: its sources are unverified.")
    if not pretrain.get("completed", True):
        out.append("Pretraining stopped before its last epoch (max_steps).")
    if reference.get("records", 0) == 0:
        out.append(f"No reference embeddings for drift checks: {reference.get('missing', 'none were computed')}.")
    out.append("Inputs must be preprocessed as above (rate, window, filters, lead order); other rates are "
               "rejected or silently mismatched.")
    out.append("Zero-shot labels depend on the prompt vocabulary; rare conditions are poorly calibrated.")
    return [f"- {x}" for x in out]


def render_card(*, name: str, digest: str, checkpoint: str, run_id: str | None, config: dict[str, Any],
                n_params: int, n_trainable: int, pretrain: dict[str, Any], data: dict[str, Any],
                rows: list[dict[str, Any]], evaluation_sources: list[str], reference: dict[str, Any]) -> str:
    """The model card as Markdown."""
    lines = [f"# Model card: {name} ({config.get('name')})", "",
             "ESI: a CoCa-style ECG-text foundation model (1D ConvNeXt-V2 ECG encoder, BERT-family text tower, "
             "caption decoder).", "",
             f"- checkpoint digest: `{digest}` (sha256 of config and weights)",
             f"- source checkpoint: `{checkpoint}`",
             f"- MLflow run: `{run_id or '-'}`", ""]
    lines += _data_section(data, pretrain)
    lines += _model_section(config, n_params, n_trainable, pretrain)
    lines += _evaluation_section(rows, evaluation_sources)
    ref = (f"{reference['records']} pretraining records (artifact reference_embeddings.npy)"
           if reference.get("records") else f"none ({reference.get('missing', '-')})")
    lines += ["## Reference embeddings", "", f"Drift reference: {ref}.", "",
              "## Intended use", "",
              "- ECG representation learning research: embeddings for retrieval, linear probes, fine-tuning, "
              "zero-shot condition scores and drift monitoring of incoming ECGs.",
              "- Not a medical device: no output may drive a clinical decision.", "",
              "## Limitations", ""]
    lines += _limitations(data, pretrain, reference)
    return "\n".join(lines) + "\n"


def description(card: str) -> str:
    """The card as a version description, cut to MLflow's limit with a pointer to the full artifact."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    note = "\n\n(truncated: the full card is the artifact model_card.md; esi models show prints it)\n"
    return card[: DESCRIPTION_LIMIT - len(note)] + note
