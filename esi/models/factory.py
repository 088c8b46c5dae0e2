"""``create_model(name_or_path, **overrides)``: an EsiModel from a JSON config in esi/models/configs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from esi.errors import ConfigError, ModelNotFoundError
from esi.models.coca import EsiModel
from esi.models.config import config_from_dict, deep_merge

CONFIG_DIR = Path(__file__).parent / "configs"


def list_models() -> list[str]:
    """Names of the model configs shipped with ESI (esi/models/configs/*.json)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """The config dict of a named model or of a JSON file."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ModelNotFoundError(
                f"model config file {text!r} does not exist; known models: {', '.join(list_models())}"
            )
    else:
        path = CONFIG_DIR / f"{text}.json"
        if not path.is_file():
            raise ModelNotFoundError(
                f"unknown model {text!r}; known models: {', '.join(list_models())}. "
                "Fix: pass one of these names or the path of a JSON model config"
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model config {path} is not valid JSON: {exc}") from exc
    data.setdefault("name", path.stem)
    return data


def create_model(
    name_or_path: str | Path, *, text_pretrained: bool = True, offline: bool | None = None, **overrides: Any
) -> EsiModel:
    """Build a model from a config name or JSON path; ``overrides`` deep-merge into the config.

    Example: ``create_model("esi_test", embed_dim=32, multimodal_cfg={"n_queries": 4})``.
    """
    data = deep_merge(load_config(name_or_path), overrides)
    return EsiModel(config_from_dict(data), text_pretrained=text_pretrained, offline=offline)
