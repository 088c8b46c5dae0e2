"""The BentoML model store: where it is (BENTOML_HOME, default $ESI_HOME/bentoml), ESI models in and out.

A BentoML model ``esi:<version>`` holds the ESI checkpoint (``model.pt``: config, weights, tokenizer) and
``esi_info.json`` (registry info: name, version, alias, digest, model URI, run id; the training preprocessing;
the checkpoint's sha256, checked when it is loaded back).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from esi.errors import ServingError

MODEL_FILE = "model.pt"
INFO_FILE = "esi_info.json"
_TAG_VERSION = re.compile(r"[^A-Za-z0-9_.-]")


def bentoml_home() -> Path:
    """Point BentoML at its home (BENTOML_HOME, default $ESI_HOME/bentoml) before bentoml is first used."""
    from esi.settings import get_settings

    home = Path(os.environ.get("BENTOML_HOME") or get_settings().bentoml_dir).expanduser().resolve()
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml  # noqa: F401  (after BENTOML_HOME is set)
    from bentoml._internal.configuration.containers import BentoMLContainer

    active = Path(BentoMLContainer.bentoml_home.get()).resolve()
    if active != home:
        raise ServingError(f"bentoml already uses {active} as its home in this process, not {home}; set "
                           "BENTOML_HOME before the first bentoml call")
    return home


def tag_version(version: Any) -> str:
    """A registry version or checkpoint label as a BentoML tag version ('3', 'ckpt-ab12...')."""
    text = _TAG_VERSION.sub("-", str(version)).strip("-.") or "0"
    return text[:60]


def version_label(registered_name: str | None, version: Any) -> str:
    """The bento/model tag version: the registry version for the default registered model ('3'); another
    registered name goes into it ('esi-ptbxl-3'), so version 3 of two registered models never share a tag."""
    from esi.settings import get_settings

    if not registered_name or registered_name == get_settings().registered_model_name:
        return str(version)
    return f"{registered_name}-{version}"


def import_model(model: Any, preprocess: dict[str, Any], name: str = "esi") -> tuple[str, bool]:
    """Put a loaded EsiModel into the BentoML store as ``name:<registry version>``; returns (tag, created).

    A model of that tag that already holds the same weights digest is reused (re-running resumes); one with
    another digest is refused rather than replaced.
    """
    import bentoml

    from esi.models.checkpoint import save_checkpoint
    from esi.serving.engine import file_digest

    bentoml_home()
    info = dict(getattr(model, "registry_info", None) or {})
    version = info.get("version") or f"ckpt-{str(info.get('digest') or 'nodigest')[:12]}"  # a bare checkpoint
    tag = f"{name}:{tag_version(version_label(info.get('name'), version))}"
    info["version"] = str(version)
    existing = stored_model(tag)
    if existing is not None:
        old = read_info(existing.path).get("registry_info") or {}
        if old.get("digest") != info.get("digest"):
            raise ServingError(f"BentoML model {tag} already exists with weights digest {old.get('digest')}, not "
                               f"{info.get('digest')}; delete it with 'bentoml models delete {tag}' if it is stale")
        return tag, False
    with bentoml.models.create(tag, module="esi", labels={"esi_name": str(info.get("name") or name),
                                                           "esi_version": str(info.get("version")),
                                                           "esi_digest": str(info.get("digest"))[:63]},
                               metadata={"esi": json.dumps(info, default=str)}) as bento_model:
        path = Path(bento_model.path)
        save_checkpoint(path / MODEL_FILE, model)
        payload = {"registry_info": info, "preprocess": preprocess,
                   "checkpoint_sha256": file_digest(path / MODEL_FILE)}
        (path / INFO_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return tag, True


def stored_model(tag: str) -> Any | None:
    """The BentoML model of ``tag`` in the local store, or None (never a cloud look-up)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def read_info(path: str | Path) -> dict[str, Any]:
    file = Path(path) / INFO_FILE
    if not file.is_file():
        raise ServingError(f"BentoML model at {path} has no {INFO_FILE}: it was not imported by 'esi bento build'")
    return json.loads(file.read_text())


def load_stored_model(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(EsiModel with registry_info, preprocess dict) from a BentoML model folder, its checkpoint digest checked."""
    from esi.models.checkpoint import load_model
    from esi.serving.engine import file_digest

    path = Path(path)
    meta = read_info(path)
    ckpt = path / MODEL_FILE
    if not ckpt.is_file():
        raise ServingError(f"BentoML model at {path} has no {MODEL_FILE}; rebuild it with 'esi bento build'")
    digest = file_digest(ckpt)
    if digest != meta.get("checkpoint_sha256"):
        raise ServingError(f"{ckpt} has sha256 {digest[:16]}..., not the {str(meta.get('checkpoint_sha256'))[:16]}... "
                           "recorded when it was imported: the file was altered; rebuild with 'esi bento build'")
    model = load_model(ckpt)
    model.registry_info = dict(meta.get("registry_info") or {})
    return model, dict(meta.get("preprocess") or {})


def resolve_bento_model(ref: Any) -> tuple[Any, dict[str, Any]]:
    """Load the service's BentoModel reference from the local store, with a clear error when it is missing."""
    stored = ref.stored
    if stored is None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        where = BentoMLContainer.model_store_dir.get()
        raise ServingError(f"BentoML model {ref.tag} is not in the model store {where}; build the bento with "
                           "'esi bento build --model models:/esi@champion' (and serve it with the same BENTOML_HOME), "
                           "or set ESI_MODEL_URI to a registered model or checkpoint")
    return load_stored_model(stored.path)
