"""Model configuration: the JSON files of esi/models/configs/ as dataclasses (unknown keys are errors)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from esi.errors import ConfigError


@dataclass
class EcgCfg:
    encoder: str = "test_convnext"  # a registered encoder name (esi.models.encoders.list_encoders())
    in_chans: int = 12  # leads, in the standard order I, II, III, aVR, aVL, aVF, V1-V6
    fs: int = 500  # sampling rate the model expects, Hz
    seq_len: int = 5000  # samples the model expects (10 s at 500 Hz)
    drop_path_rate: float = 0.0  # stochastic depth of the encoder
    pool_heads: int = 8  # heads of the single-query contrastive pooler
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the encoder


@dataclass
class TextCfg:
    hf_model_name: str = "tiny-random-bert"  # hub id, local path, "minilm" or "tiny-random-bert"
    pooling: str = "cls"  # "cls" or "mean" pooling of the text encoder's final hidden states
    context_length: int = 128  # longest caption in tokens (including [CLS] and [SEP])
    num_layers: int = 0  # keep only the bottom layers of the text encoder (0: all); cheaper CPU configs
    freeze_layers: int = 0  # fixed bottom layers of the text encoder (with its embeddings); -1: all of it


@dataclass
class DecoderCfg:
    width: int = 64  # decoder width (also the width of the multi-query pool)
    layers: int = 2  # decoder blocks (causal self-attention + cross-attention + MLP)
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden width / width
    n_queries: int = 16  # queries of the attentional pool the decoder cross-attends to (64-256 at scale)
    tie_embeddings: bool = True  # vocabulary projection shares the decoder's token embedding table
    init_from_text: bool = True  # initialise the token embeddings from the text encoder's (when widths match)


@dataclass
class EsiConfig:
    embed_dim: int = 64  # joint ECG-text embedding size
    ecg_cfg: EcgCfg = field(default_factory=EcgCfg)
    text_cfg: TextCfg = field(default_factory=TextCfg)
    multimodal_cfg: DecoderCfg = field(default_factory=DecoderCfg)
    init_logit_scale: float = 2.6592600369644043  # log(1 / 0.07)
    max_logit_scale: float = 4.605170185988092  # log(100)
    name: str = ""  # the config's name (file stem), for logs and registries

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SUBCONFIGS = {"ecg_cfg": EcgCfg, "text_cfg": TextCfg, "multimodal_cfg": DecoderCfg}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"model config {where} must be an object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown model config field(s) {', '.join(where + k for k in unknown)}; "
            f"known fields of {where or 'the top level'}: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for key, value in data.items():
        sub = _SUBCONFIGS.get(key) if cls is EsiConfig else None
        kwargs[key] = _build(sub, value, f"{key}.") if sub else value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> EsiConfig:
    """Validate a config dict (as in the JSON files) and return the dataclass."""
    return _build(EsiConfig, data, "")


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overrides`` merged in; nested dicts merge key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
