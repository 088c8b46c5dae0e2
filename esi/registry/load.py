"""Loading registered models: the torch EsiModel (for evaluation, scoring, serving) and its drift reference."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from esi.errors import RegistryError
from esi.registry.pyfunc import CARD, CONFIG, INFO, REFERENCE, TEXT, WEIGHTS, build_model, sha256_file
from esi.registry.tracking import ModelRef, client, get_version, parse_model_uri, version_label

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def _artifacts_dir(root: Path) -> Path | None:
    """The ``artifacts`` folder of a downloaded ESI pyfunc model (None for another layout)."""
    for cand in (root / "artifacts", root):
        if (cand / WEIGHTS).is_file() and (cand / CONFIG).is_file():
            return cand
    return None


def _download(mlc: Any, mv: Any, dest: Path, path: str | None = None) -> Path:
    """Download a version's model artifacts (or one file of them) into ``dest``."""
    import mlflow

    uri = f"models:/{mv.name}/{mv.version}" + (f"/{path}" if path else "")
    try:
        if path:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{_artifact_root(mlc, mv)}/{path}",
                                                            dst_path=str(dest), tracking_uri=mlc.tracking_uri))
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest),
                                                        tracking_uri=mlc.tracking_uri))
    except Exception as exc:
        raise RegistryError(f"{version_label(mv)}: cannot download its artifacts from {mlc.tracking_uri} "
                            f"({type(exc).__name__}: {exc}); check the artifact store (mlflow server "
                            "--artifacts-destination) or re-register the run") from exc


def _artifact_root(mlc: Any, mv: Any) -> str:
    """Where the version's model files live: the LoggedModel's artifact location, else its source."""
    model_id = logged_model_id(mv)
    if model_id:
        return str(mlc.get_logged_model(model_id).artifact_location).rstrip("/")
    return str(mv.source).rstrip("/")


def logged_model_id(mv: Any) -> str | None:
    """The MLflow 3 LoggedModel id of a version (the SQL store keeps it only in the source models:/m-...)."""
    model_id = getattr(mv, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(mv.source or "")
    if source.startswith("models:/m-") and "/" not in source[len("models:/"):]:
        return source[len("models:/"):]
    return None


def _info(mv: Any, alias: str | None, source: str | None, uri: str) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    return {"name": mv.name, "version": int(mv.version), "alias": alias, "digest": tags.get("checkpoint_digest"),
            "model_uri": uri, "run_id": mv.run_id, "source_checkpoint": source or tags.get("source_checkpoint"),
            "aliases": list(mv.aliases or []), "validation_status": tags.get("validation_status"),
            "reference_records": int(tags.get("reference_records", 0) or 0)}


def _legacy(root: Path, mv: Any, where: str) -> tuple[Any, str]:
    """A version whose source is a bare checkpoint folder (registered by hand, not by esi register)."""
    from esi.evaluation.embed import model_digest
    from esi.models.checkpoint import load_model as load_checkpoint

    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES) \
        if root.is_dir() else [root]
    if not files:
        raise RegistryError(f"{where}: its artifacts hold neither an ESI model (weights.pt + config.json) nor a "
                            f"checkpoint file; register the run with 'esi register --run RUN_DIR'")
    preferred = [p for p in files if p.stem in ("model", "final", "checkpoint", "esi")] or files
    model = load_checkpoint(preferred[0])
    expected = (mv.tags or {}).get("checkpoint_digest")
    if expected and model_digest(model) != expected:
        raise RegistryError(f"{where}: checkpoint {preferred[0].name} has digest {model_digest(model)}, the "
                            f"registry recorded {expected}: the file is corrupt or was altered")
    rel = preferred[0].relative_to(root) if root.is_dir() else Path(preferred[0].name)
    return model, f"{str(mv.source).rstrip('/')}/{rel.as_posix()}"


def load_model(uri: str | Path, *, tracking_uri: str | None = None) -> Any:
    """The torch EsiModel (eval mode) behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a checkpoint path.

    ``model.registry_info`` = {name, version, alias, digest, model_uri, run_id, source_checkpoint, ...}. The
    weights file is checked against the sha256 recorded on the version before it is read, and the rebuilt model
    against the recorded digest: a corrupt or altered artifact is a RegistryError naming the version.
    """
    text = str(uri)
    if not text.startswith("models:/"):
        return _load_path(Path(text))
    ref = parse_model_uri(text)
    mlc = client(tracking_uri)
    mv = get_version(mlc, ref)
    where = version_label(mv)
    tags = dict(mv.tags or {})
    with tempfile.TemporaryDirectory(prefix="esi-model-") as tmp:
        root = _download(mlc, mv, Path(tmp))
        art = _artifacts_dir(root)
        if art is None:
            model, source = _legacy(root, mv, where)
        else:
            saved = _info_file(art)  # read once: the weights hash fallback and the pretraining metadata
            expected = tags.get("weights_sha256") or saved.get("weights_sha256")
            if not expected:
                raise RegistryError(f"{where}: no weights_sha256 tag or esi_model.json: cannot verify its weights; "
                                    "re-register the run with 'esi register'")
            model = build_model(art / WEIGHTS, art / CONFIG, art / TEXT, weights_sha256=expected,
                                digest=tags.get("checkpoint_digest"), where=where)
            source = None
    model.registry_info = _info(mv, ref.alias, source, text)
    model.checkpoint_extra = {"registry": model.registry_info}
    if art is not None:
        for key in ("pretrain", "provenance"):
            if saved.get(key):
                model.checkpoint_extra[key] = saved[key]
    log.info("loaded %s (%s) from %s", where, text, mlc.tracking_uri)
    return model


def _info_file(art: Path) -> dict[str, Any]:
    """esi_model.json of a model folder ({} when absent); a damaged one is an error, never silently empty."""
    path = art / INFO
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path} is unreadable ({exc}); re-register the run with 'esi register'") from exc


def _load_path(path: Path) -> Any:
    """A checkpoint file/run folder, or a downloaded MLflow model folder (MLmodel + artifacts/)."""
    from esi.evaluation.embed import model_digest
    from esi.models.checkpoint import load_model as load_checkpoint

    if not path.exists():
        raise RegistryError(f"{path} does not exist; pass models:/NAME@ALIAS, models:/NAME/VERSION or a "
                            "checkpoint file (RUN_DIR/model.pt)")
    art = _artifacts_dir(path) if path.is_dir() else None
    if art is not None:
        info = _info_file(art)
        if "weights_sha256" not in info:
            raise RegistryError(f"{art / INFO} is missing or has no weights_sha256: not an ESI model folder")
        model = build_model(art / WEIGHTS, art / CONFIG, art / TEXT, weights_sha256=info["weights_sha256"],
                            digest=info.get("digest"), where=str(path))
        source = info.get("source_checkpoint")
        run_id = None
    else:
        ckpt = path / "model.pt" if path.is_dir() else path
        model = load_checkpoint(ckpt)
        source = str(ckpt)
        run_id = ((getattr(model, "checkpoint_extra", None) or {}).get("pretrain") or {}).get("mlflow_run_id")
    extra = dict(getattr(model, "checkpoint_extra", None) or {})
    model.registry_info = {"name": None, "version": None, "alias": None, "digest": model_digest(model),
                           "model_uri": None, "run_id": run_id, "source_checkpoint": source}
    model.checkpoint_extra = extra
    return model


def load_reference(uri: str | Path, *, tracking_uri: str | None = None) -> np.ndarray | None:
    """The reference ECG embeddings (n, D) saved with a registered version; None when it has none.

    Also reads a downloaded ESI model folder; a bare checkpoint has no reference (None). The file is checked
    against the sha256 recorded on the version.
    """
    text = str(uri)
    if not text.startswith("models:/"):
        path = Path(text)
        art = _artifacts_dir(path) if path.is_dir() else None
        if art is None or not (art / REFERENCE).is_file():
            return None
        return _read_reference(art / REFERENCE, _info_file(art).get("reference_sha256"), str(path))
    mlc = client(tracking_uri)
    mv = get_version(mlc, parse_model_uri(text))
    tags = dict(mv.tags or {})
    if int(tags.get("reference_records", 0) or 0) == 0:
        return None
    with tempfile.TemporaryDirectory(prefix="esi-ref-") as tmp:
        local = _download(mlc, mv, Path(tmp), f"artifacts/{REFERENCE}")
        return _read_reference(local, tags.get("reference_sha256"), version_label(mv))


def _read_reference(path: Path, expected: str | None, where: str) -> np.ndarray:
    if expected and sha256_file(path) != expected:
        raise RegistryError(f"{where}: {REFERENCE} does not match the sha256 recorded at registration (corrupt "
                            "or altered); re-register the run")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise RegistryError(f"{where}: {REFERENCE} is unreadable ({exc}); re-register the run") from exc


def model_card(ref: str, *, tracking_uri: str | None = None) -> tuple[dict[str, Any], str]:
    """(version summary, card Markdown) of ``esi@champion`` / ``esi/3`` / ``models:/...``."""
    from esi.registry.tracking import parse_ref

    mlc = client(tracking_uri)
    parsed: ModelRef = parse_ref(ref)
    mv = get_version(mlc, parsed)
    card = None
    with tempfile.TemporaryDirectory(prefix="esi-card-") as tmp:
        try:
            card = _download(mlc, mv, Path(tmp), f"artifacts/{CARD}").read_text()
        except RegistryError as exc:  # a hand-registered version has no card artifact: the description stands
            log.info("no card artifact for %s (%s); showing the version description", version_label(mv), exc)
    return _info(mv, parsed.alias, None, parsed.uri), card or mv.description or ""
