"""``register_run``: log a pretraining run's model to MLflow, register it as a version, tag it, alias it.

Re-registering a checkpoint whose digest (config + weights) is already a version returns that version
(``created=False``) instead of a duplicate; evaluation metrics not yet on it are added.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esi.errors import RegistryError
from esi.registry import metrics as M
from esi.registry.load import logged_model_id
from esi.registry.tracking import client, ensure_experiment

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"  # the logged model's name inside its run


@dataclass
class Registration:
    """The outcome of :func:`register_run`."""

    name: str
    version: int
    model_uri: str  # models:/esi/3
    digest: str  # checkpoint digest (sha256 of config + weights, as esi evaluate reports it)
    created: bool  # False: this checkpoint was already registered as that version
    card_path: Path  # a local copy of the model card (ESI_HOME/registry/NAME/vN/model_card.md)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    model_id: str | None = None  # MLflow 3 LoggedModel id (models:/m-...)
    reference_records: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _checkpoint_path(run_dir: Path) -> Path:
    ckpt = run_dir / "model.pt" if run_dir.is_dir() else run_dir
    if not ckpt.is_file():
        raise RegistryError(f"{ckpt} does not exist: {run_dir} is not a finished pretraining run; finish it "
                            "(esi pretrain ... --resume --out RUN_DIR) or pass the run folder holding model.pt")
    return ckpt


def _load(ckpt: Path) -> tuple[Any, dict[str, Any]]:
    """The model and the raw checkpoint (for its text assets and extra), reading the file once."""
    from esi.errors import ConfigError
    from esi.models.checkpoint import load_state_strict, read_checkpoint
    from esi.models.coca import EsiModel

    payload = read_checkpoint(ckpt)
    try:
        model = EsiModel(payload["config"], text_pretrained=False, text_assets=payload.get("text_assets"))
    except ConfigError as exc:
        raise RegistryError(f"checkpoint {ckpt} holds an invalid model config: {exc}") from exc
    load_state_strict(model, payload["state_dict"], source=f"checkpoint {ckpt}")
    return model.eval(), payload


def _find_by_digest(mlc: Any, name: str, digest: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        found = mlc.search_model_versions(f"name='{name}' and tags.checkpoint_digest='{digest}'")
    except MlflowException:
        return None
    ready = [v for v in found if str(v.status).upper() in ("READY", "MODELVERSIONSTATUS.READY", "")]
    return min(ready or found, key=lambda v: int(v.version)) if found else None


def _card_copy(name: str, version: int, card: str) -> Path:
    from esi.data.store import atomic_write_bytes
    from esi.settings import get_settings

    path = get_settings().home / "registry" / name / f"v{version}" / "model_card.md"
    atomic_write_bytes(path, card.encode())
    return path


def _evaluations(evaluations: Sequence[str | Path], digest: str) -> tuple[list[M.Evaluation], dict[str, float]]:
    evals = [M.read_evaluation(e) for e in evaluations]
    merged: dict[str, float] = {}
    for ev in evals:
        if ev.model_digest and ev.model_digest != digest:
            raise RegistryError(f"evaluation {ev.path} scored the model with digest {ev.model_digest}, but this "
                                f"run's checkpoint has digest {digest}; pass the evaluation of this model "
                                "(esi evaluate --model RUN_DIR/model.pt ...)")
        merged.update(M.evaluation_metrics(ev))
    return evals, merged


def _pretrain_run(mlc: Any, run_id: str | None) -> str | None:
    """The pretraining run's id when it lives in this tracking store (the model is logged into it)."""
    if not run_id:
        return None
    try:
        run = mlc.get_run(run_id)
    except Exception:  # another tracking store, or a deleted run: log into a registration run instead
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


def _update_existing(mlc: Any, mv: Any, metrics: dict[str, float]) -> dict[str, float]:
    """Add metrics the version lacks (or that changed); returns them."""
    import mlflow

    have = M.metrics_from_tags(dict(mv.tags or {}))
    new = {k: v for k, v in metrics.items() if have.get(k) != v}
    for key, value in M.metric_tags(new).items():
        mlc.set_model_version_tag(mv.name, mv.version, key, value)
    model_id = logged_model_id(mv)
    if new and model_id:
        mlflow.log_metrics(new, model_id=model_id, run_id=mv.run_id)
    return new


def _existing(mlc: Any, mv: Any, metrics: dict[str, float], t0: float) -> Registration:
    new = _update_existing(mlc, mv, metrics)
    tags = dict(mv.tags or {})
    note = f"; {len(new)} new metric(s) added" if new else ""
    log.info("%s v%s already holds checkpoint %s: not registered again%s", mv.name, mv.version,
             tags.get("checkpoint_digest"), note)
    return Registration(name=mv.name, version=int(mv.version), model_uri=f"models:/{mv.name}/{mv.version}",
                        digest=tags.get("checkpoint_digest", ""), created=False,
                        card_path=_card_copy(mv.name, int(mv.version), mv.description or ""),
                        metrics={**M.metrics_from_tags(tags), **new}, run_id=mv.run_id,
                        model_id=logged_model_id(mv),
                        reference_records=int(tags.get("reference_records", 0) or 0),
                        seconds=time.perf_counter() - t0)


def _reference(model: Any, pre: dict[str, Any], data: dict[str, Any], n: int,
               progress: bool) -> tuple[Any, dict[str, Any]]:
    from esi.registry.reference import reference_embeddings

    if n <= 0:
        return None, {"records": 0, "missing": "disabled (reference_records=0)"}
    if not data.get("available"):
        return None, {"records": 0, "missing": data.get("missing", "the pretraining store is unknown")}
    emb, info = reference_embeddings(model, data["store"], pre.get("folds"), n, progress=progress)
    if not len(emb):
        return None, {"records": 0, "missing": f"no usable records in {data['store']}"}
    return emb, info


def _plain_json(obj: Any) -> Any:
    """A checkpoint's metadata as JSON values (tensors or numpy scalars become lists/numbers)."""
    import json

    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def register_run(run_dir: str | Path, evaluations: Sequence[str | Path] = (), name: str = "esi", *,
                 tracking_uri: str | None = None, alias: str | None = "candidate",
                 reference_records: int | None = None, progress: bool = False) -> Registration:
    """Log the run's model (RUN_DIR/model.pt) as an MLflow pyfunc, register it as a version of ``name``, copy
    the evaluations' metrics onto the logged model and the version, tag data provenance, write the model card
    (artifact + description), save reference embeddings of up to ``reference_records`` pretraining records
    (default: settings) and point ``alias`` at the new version.
    """
    from esi.evaluation.embed import model_digest
    from esi.settings import get_settings

    t0 = time.perf_counter()
    settings = get_settings()
    run_dir = Path(run_dir)
    ckpt = _checkpoint_path(run_dir)
    model, payload = _load(ckpt)
    digest = model_digest(model)
    evals, metrics = _evaluations(evaluations, digest)
    mlc = client(tracking_uri)
    from esi.data.lock import exclusive_lock

    # One registration of a name at a time on this ESI_HOME: a concurrent one waits, then finds the version.
    with exclusive_lock(settings.home / "registry" / name, f"esi register {name}", timeout=600):
        found = _find_by_digest(mlc, name, digest)
        if found is not None:
            return _existing(mlc, found, metrics, t0)
        return _register_new(mlc, model, payload, ckpt, run_dir, digest, evals, metrics, name, alias,
                             reference_records, progress, t0)


def _register_new(mlc: Any, model: Any, payload: dict[str, Any], ckpt: Path, run_dir: Path, digest: str,
                  evals: list[M.Evaluation], metrics: dict[str, float], name: str, alias: str | None,
                  reference_records: int | None, progress: bool, t0: float) -> Registration:
    import mlflow

    from esi.registry.card import description, render_card, store_provenance
    from esi.registry.pyfunc import log_esi_model
    from esi.settings import get_settings

    settings = get_settings()
    extra = payload.get("extra") or {}
    pretrain = extra.get("pretrain") or {}
    pre_cfg = pretrain.get("config") or {}
    data = store_provenance(pre_cfg.get("store"), pre_cfg.get("folds"), pre_cfg.get("mix"))
    warnings: list[str] = []
    n_ref = settings.registry_reference_records if reference_records is None else reference_records
    reference, ref_info = _reference(model, pre_cfg, data, n_ref, progress)
    if reference is None and n_ref > 0:
        warnings.append(f"registered without reference embeddings: {ref_info['missing']} (drift checks of "
                        "'esi score' will have no baseline)")
        log.warning(warnings[-1])
    n_params = sum(p.numel() for p in model.parameters())
    # The text tower's frozen layers (text_cfg.freeze_layers) are built frozen: pretraining never updated them.
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows = [r for ev in evals for r in M.evaluation_rows(ev)]
    source_run = _pretrain_run(mlc, pretrain.get("mlflow_run_id"))
    card = render_card(name=name, digest=digest, checkpoint=str(ckpt.resolve()), run_id=source_run,
                       config=model.config_dict(), n_params=n_params, n_trainable=trainable, pretrain=pretrain,
                       data=data, rows=rows, evaluation_sources=[str(ev.path) for ev in evals],
                       reference=ref_info)
    info = {"digest": digest, "name": name, "n_params": n_params, "source_checkpoint": str(ckpt.resolve()),
            "embed_dim": int(model.config.embed_dim), "fs": int(model.config.ecg_cfg.fs),
            "seq_len": int(model.config.ecg_cfg.seq_len), "reference_records": int(ref_info["records"]),
            "store": data.get("store"), "store_digest": data.get("store_digest"), "folds": pre_cfg.get("folds"),
            # What the model was pretrained on travels with it, so evaluating a registered model still checks
            # test-fold contamination and uses the pretraining set as the MMD reference.
            "pretrain": _plain_json(pretrain), "provenance": _plain_json(extra.get("provenance"))}

    experiment = ensure_experiment(mlc, settings.mlflow_experiment)
    run_kw: dict[str, Any] = {"run_id": source_run} if source_run else {
        "experiment_id": experiment, "run_name": f"register-{run_dir.name}", "tags": {"esi.stage": "register"}}
    if mlflow.active_run() is not None:  # called inside a run (a pipeline step): log into a child run
        run_kw = {"experiment_id": experiment, "run_name": f"register-{run_dir.name}", "nested": True,
                  "tags": {"esi.stage": "register", "esi.pretrain_run": str(source_run)}}
    with tempfile.TemporaryDirectory(prefix="esi-register-") as tmp, mlflow.start_run(**run_kw) as run:
        model_info, written = log_esi_model(model, payload["text_assets"], Path(tmp) / "artifacts", info=info,
                                            card=card, reference=reference, name=MODEL_ARTIFACT)
        if metrics:
            mlflow.log_metrics(metrics, model_id=model_info.model_id)
        tags = _version_tags(digest, written, ckpt, run_dir, data, pre_cfg, metrics, model, n_params)
        mlflow.set_logged_model_tags(model_info.model_id, {k: v for k, v in tags.items()
                                                           if not k.startswith(M.TAG_PREFIX)})
        mv = mlflow.register_model(model_info.model_uri, name, tags=tags)
        run_id = run.info.run_id
    version = int(mv.version)
    mlc.update_model_version(name, str(version), description=description(card))
    if alias:
        mlc.set_registered_model_alias(name, alias, str(version))
    seconds = time.perf_counter() - t0
    log.info("registered %s v%d (digest %s, %d metrics, %d reference embeddings) in %.1f s", name, version,
             digest, len(metrics), ref_info["records"], seconds)
    return Registration(name=name, version=version, model_uri=f"models:/{name}/{version}", digest=digest,
                        created=True, card_path=_card_copy(name, version, card), metrics=metrics, run_id=run_id,
                        model_id=model_info.model_id, reference_records=int(ref_info["records"]),
                        warnings=warnings, seconds=seconds)


def _version_tags(digest: str, written: dict[str, Any], ckpt: Path, run_dir: Path, data: dict[str, Any],
                  pre_cfg: dict[str, Any], metrics: dict[str, float], model: Any, n_params: int) -> dict[str, str]:
    """Provenance tags of the version (and the logged model): digests, data, folds, metrics."""
    tags = {
        "checkpoint_digest": digest, "weights_sha256": written["weights_sha256"],
        "reference_records": str(written.get("reference_records", 0)),
        "source_checkpoint": str(ckpt.resolve()), "run_dir": str(run_dir.resolve()),
        "model_config": str(model.config.name), "n_params": str(n_params),
        "data.store": str(data.get("store")), "data.store_digest": str(data.get("store_digest") or "unknown"),
        "data.folds": json.dumps(pre_cfg.get("folds")), "data.n_records": str(data.get("n_records", "unknown")),
        "data.sources": json.dumps(data.get("sources") or {}), "data.synthetic_only": str(data.get("synthetic_only")),
        "data.captions": str(pre_cfg.get("captions")),
    }
    if written.get("reference_sha256"):
        tags["reference_sha256"] = written["reference_sha256"]
    tags.update(M.metric_tags(metrics))
    return tags
