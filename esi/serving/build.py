"""``esi bento build``: a registered model -> the BentoML model ``esi:<version>`` -> the bento ``esi:<version>``.

The bento is built offline from ``[tool.bentoml.build]`` in the project's pyproject.toml (service, included
files, ``lock_packages = false``). Re-running with the same model reuses the model and the bento.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from esi.errors import ServingError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pyproject_path() -> Path:
    """The pyproject.toml that holds ``[tool.bentoml.build]`` (the project checkout ESI runs from)."""
    import tomllib

    path = PROJECT_ROOT / "pyproject.toml"
    if not path.is_file():
        raise ServingError(f"no pyproject.toml at {PROJECT_ROOT}: 'esi bento build' runs from a project checkout "
                           "(it reads [tool.bentoml.build] there)")
    with path.open("rb") as fh:
        section = tomllib.load(fh).get("tool", {}).get("bentoml", {}).get("build", {})
    if section.get("service") != "esi.serving.service:EsiService":
        raise ServingError(f"{path}: [tool.bentoml.build] service must be 'esi.serving.service:EsiService'")
    return path


def build_bento(model_uri: str = "models:/esi@champion", *, tracking_uri: str | None = None) -> str:
    """Import ``model_uri`` into the BentoML model store and build the bento; returns its tag (e.g. 'esi:3').

    Offline: nothing is resolved from BentoCloud or a package index. BentoML's store is BENTOML_HOME (default
    $ESI_HOME/bentoml); serve the result with the same BENTOML_HOME: ``bentoml serve esi:latest``.
    """
    from esi.serving.bentostore import bentoml_home, import_model, stored_model
    from esi.serving.engine import load_model_uri, model_preprocess_config

    home = bentoml_home()
    project = pyproject_path()
    model = load_model_uri(model_uri, tracking_uri=tracking_uri)
    preprocess = model_preprocess_config(model).to_dict()
    model_tag, created = import_model(model, preprocess)
    if stored_model(model_tag) is None:  # pragma: no cover - import_model just wrote it
        raise ServingError(f"BentoML model {model_tag} is missing from {home} right after its import")
    log.info("%s BentoML model %s from %s", "imported" if created else "reusing", model_tag, model_uri)
    version = model_tag.split(":", 1)[1]
    bento_tag = f"esi:{version}"
    existing = _existing_bento(bento_tag)
    if existing is not None:
        packed = _packed_models(existing)
        if packed == [model_tag]:
            log.info("bento %s already built with %s", bento_tag, model_tag)
            return bento_tag
        raise ServingError(f"bento {bento_tag} exists but packs {packed}, not {model_tag}; delete it with "
                           f"'bentoml delete {bento_tag}' if it is stale")
    return _build(project, bento_tag, model_tag, model_uri)


def _existing_bento(tag: str):
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.bentos.get(tag)
    except NotFound:
        return None


def _build(project: Path, bento_tag: str, model_tag: str, model_uri: str) -> str:
    import bentoml

    previous = os.environ.get("ESI_BENTO_MODEL")
    os.environ["ESI_BENTO_MODEL"] = model_tag  # the service module packs exactly this model
    try:
        bento = bentoml.bentos.build_bentofile(str(project), version=bento_tag.split(":", 1)[1],
                                               build_ctx=str(project.parent), reload=True,
                                               labels={"esi_model": model_tag.replace(":", "-"),
                                                       "esi_source": _label(model_uri)})
    except Exception as exc:  # bentoml raises many kinds; the message says what failed
        raise ServingError(f"bentoml build of {bento_tag} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if previous is None:
            os.environ.pop("ESI_BENTO_MODEL", None)
        else:
            os.environ["ESI_BENTO_MODEL"] = previous
    packed = _packed_models(bento)
    if packed != [model_tag]:
        raise ServingError(f"bento {bento.tag} packs {packed}, expected [{model_tag}]")
    log.info("built bento %s (model %s) in %s", bento.tag, model_tag, bento.path)
    return str(bento.tag)


def _packed_models(bento) -> list[str]:
    """Model tags a bento declares (BentoML 1.4 lists them per service)."""
    tags = [str(m.tag) for m in bento.info.models]
    for svc in bento.info.services:
        tags += [str(m.tag) for m in svc.models if str(m.tag) not in tags]
    return tags


def _label(text: str) -> str:
    """A BentoML label value (<= 63 chars of [A-Za-z0-9_.-])."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[-63:].strip("_.-") or "unknown"


def serve_command(tag: str = "esi:latest", port: int = 3000) -> str:
    """The shell command that serves a built bento from this ESI_HOME's BentoML store."""
    from esi.serving.bentostore import bentoml_home

    return f"BENTOML_HOME={bentoml_home()} bentoml serve {tag} --host 127.0.0.1 --port {port}"
