"""EsiModel: a CoCa-style ECG-text model.

    ECG (B, 12, T) ─► encoder.forward_features ─► token map (B, T', W)
        ├─► single-query attentional pool ─► projection ─► L2-normalised ECG embedding ─┐ contrastive
        └─► multi-query attentional pool (n_queries tokens) ─────────────┐              │ (InfoNCE)
    caption ids (B, L) ─► text tower ([CLS]/mean pooled) ─► projection ─► │ text embedding ┘
    caption ids (B, L) ─► decoder token embeddings + positions ─► causal self-attention
                          + cross-attention to the pooled ECG tokens ─► vocabulary logits (B, L, V)

The caption decoder reads only its own token embeddings (causally) and the ECG tokens: never the hidden states
of the bidirectional text encoder, which at position i have already seen token i+1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from esi.errors import ConfigError, DataError
from esi.models.config import EsiConfig, config_from_dict
from esi.models.encoders import create_encoder
from esi.models.layers import Attention, AttentionalPooler, Mlp, length_groups
from esi.models.text import TextTower


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the ECG tokens, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.ln_self = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads)
        self.ln_cross = nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads)
        self.ln_mlp = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, ecg_tokens: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.ln_self(x), causal=True)
        x = x + self.cross_attn(self.ln_cross(x), context=ecg_tokens)
        return x + self.mlp(self.ln_mlp(x))


class CaptionDecoder(nn.Module):
    """Causal transformer decoder over caption tokens, cross-attending to pooled ECG tokens."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: float,
        tie_embeddings: bool,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positions = nn.Parameter(torch.randn(max_len, width) * 0.01)
        self.blocks = nn.ModuleList([DecoderBlock(width, heads, mlp_ratio) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(width)
        self.tie_embeddings = tie_embeddings
        if tie_embeddings:
            self.output_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.output = nn.Linear(width, vocab_size)

    def hidden(self, input_ids: torch.Tensor, ecg_tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, L, width); position t sees only ids <= t (causal self-attention)."""
        x = self.token_embedding(input_ids) + self.positions[: input_ids.shape[1]]
        for block in self.blocks:
            x = block(x, ecg_tokens)
        return self.ln_final(x)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states (..., width) -> (..., vocab)."""
        if self.tie_embeddings:
            return F.linear(hidden, self.token_embedding.weight, self.output_bias)
        return self.output(hidden)

    def forward(self, input_ids: torch.Tensor, ecg_tokens: torch.Tensor) -> torch.Tensor:
        """``input_ids`` (B, L), ``ecg_tokens`` (B, Q, width) -> logits (B, L, vocab)."""
        return self.project(self.hidden(input_ids, ecg_tokens))


class EsiModel(nn.Module):
    """ECG encoder + text tower + caption decoder (CoCa).

    Args:
        config: an :class:`EsiConfig` or its dict form (as in esi/models/configs/*.json).
        text_pretrained: load the text encoder's pretrained weights (False when a checkpoint follows).
        offline: never contact the model hub (default: settings).
        text_assets: text config + tokenizer files from a checkpoint; the text model is then rebuilt from them
            instead of being looked up by name.
    """

    def __init__(
        self,
        config: EsiConfig | dict[str, Any],
        text_pretrained: bool = True,
        offline: bool | None = None,
        text_assets: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.config = config if isinstance(config, EsiConfig) else config_from_dict(config)
        cfg = self.config
        check_logit_scale(cfg.init_logit_scale, cfg.max_logit_scale)
        ecg, txt, dec = cfg.ecg_cfg, cfg.text_cfg, cfg.multimodal_cfg
        self.ecg_encoder = create_encoder(ecg.encoder, in_chans=ecg.in_chans, **self._encoder_kwargs())
        width = int(self.ecg_encoder.width)
        self.contrastive_pooler = AttentionalPooler(width, width, n_queries=1, heads=ecg.pool_heads)
        self.ecg_proj = nn.Linear(width, cfg.embed_dim, bias=False)
        nn.init.normal_(self.ecg_proj.weight, std=width**-0.5)
        self.caption_pooler = AttentionalPooler(dec.width, width, n_queries=dec.n_queries, heads=dec.heads)

        self.text = TextTower(
            txt.hf_model_name,
            cfg.embed_dim,
            pooling=txt.pooling,
            offline=offline,
            pretrained=text_pretrained,
            freeze_layers=txt.freeze_layers,
            num_layers=txt.num_layers,
            assets=text_assets,
        )
        self.tokenizer = self.text.tokenizer
        self.max_text_len = int(min(txt.context_length, self.text.max_positions))
        self.decoder = CaptionDecoder(
            self.text.vocab_size,
            self.max_text_len,
            dec.width,
            dec.layers,
            dec.heads,
            dec.mlp_ratio,
            dec.tie_embeddings,
        )
        if dec.init_from_text and self.text.hidden_size == dec.width:
            with torch.no_grad():
                self.decoder.token_embedding.weight.copy_(self.text.word_embeddings.weight)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))

    def _encoder_kwargs(self) -> dict[str, Any]:
        ecg = self.config.ecg_cfg
        kwargs = dict(ecg.encoder_kwargs)
        if ecg.drop_path_rate:
            kwargs.setdefault("drop_path_rate", ecg.drop_path_rate)
        if ecg.encoder.startswith(("vit1d", "test_vit")):
            kwargs.setdefault("seq_len", ecg.seq_len)
        return kwargs

    # ----------------------------------------------------------------------------------------------- helpers
    def config_dict(self) -> dict[str, Any]:
        """The JSON-serialisable config this model was built from."""
        return self.config.to_dict()

    def _check_ecg(self, ecg: torch.Tensor) -> None:
        c = self.config.ecg_cfg.in_chans
        if ecg.ndim != 3 or ecg.shape[1] != c:
            raise DataError(
                f"ECG batch must have shape (batch, {c}, samples), got {tuple(ecg.shape)}",
                field="ecg",
                fix=f"stack records as (batch, {c} leads, samples) in the standard order",
            )

    def _check_text(self, input_ids: torch.Tensor) -> None:
        if input_ids.ndim != 2 or input_ids.shape[1] > self.max_text_len:
            raise DataError(
                f"caption ids must have shape (batch, <= {self.max_text_len}), got {tuple(input_ids.shape)}",
                field="input_ids",
                fix="tokenize with model.tokenize(texts), which truncates to model.max_text_len",
            )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute encoder blocks in the backward pass (long ECGs, big encoders); a no-op if unsupported."""
        if hasattr(self.ecg_encoder, "set_grad_checkpointing"):
            self.ecg_encoder.set_grad_checkpointing(enable)

    def clamped_logit_scale(self) -> torch.Tensor:
        """exp(logit_scale), with logit_scale clamped to [0, max_logit_scale] (log 100 as in CLIP/CoCa).

        The trainer also clamps the parameter itself after every optimizer step (:meth:`clamp_logit_scale_`):
        a parameter left past the bound would get zero gradient from this clamp forever.
        """
        return self.logit_scale.clamp(0.0, self.config.max_logit_scale).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the logit-scale parameter in place to [0, max_logit_scale] (after each optimizer step)."""
        self.logit_scale.clamp_(0.0, self.config.max_logit_scale)

    # ------------------------------------------------------------------------------------------------ towers
    def ecg_tokens(self, ecg: torch.Tensor) -> torch.Tensor:
        """The encoder's token map (B, T', width)."""
        self._check_ecg(ecg)
        return self.ecg_encoder.forward_features(ecg)

    def ecg_features(self, ecg: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled encoder features (B, width), the input of linear probes."""
        return self.ecg_tokens(ecg).mean(dim=1)

    def _embed_ecg(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ecg_proj(self.contrastive_pooler(tokens).squeeze(1)), dim=-1)

    def encode_ecg(self, ecg: torch.Tensor) -> torch.Tensor:
        """L2-normalised ECG embedding (B, embed_dim)."""
        return self._embed_ecg(self.ecg_tokens(ecg))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embedding (B, embed_dim)."""
        self._check_text(input_ids)
        return F.normalize(self.text(input_ids, attention_mask), dim=-1)

    def caption_logits(self, tokens: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Decoder logits (B, L, vocab) given the ECG token map and caption ids."""
        return self.decoder(input_ids, self.caption_pooler(tokens))

    def caption_target_logits(
        self, tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, vocab) and target ids (N,) at the N positions whose next token is a real token, in
        row-major order.

        The training form of :meth:`caption_logits`: the decoder runs on ids[:, :-1] (the last position predicts
        nothing), on up to two groups of rows trimmed to their own longest caption (causal attention: padding
        after a row's end never changes its real positions), and the 30k-wide vocabulary projection only at
        valid targets.
        """
        pooled = self.caption_pooler(tokens)
        ids, valid = input_ids[:, :-1], attention_mask[:, 1:].bool()
        length = input_ids.shape[1] - 1
        hidden, keys = [], []
        for rows, width in length_groups(attention_mask.sum(dim=1)):
            w = max(1, min(length, width - 1))
            h = self.decoder.hidden(ids[rows, :w], pooled[rows])
            v = valid[rows, :w]
            hidden.append(h[v])
            keys.append((rows[:, None] * length + torch.arange(w, device=ids.device))[v])
        order = torch.argsort(torch.cat(keys))
        return self.decoder.project(torch.cat(hidden)[order]), input_ids[:, 1:][valid]

    def forward(
        self,
        ecg: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        contrastive: bool = True,
        caption: bool = True,
        caption_targets_only: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Both towers and the decoder.

        Returns a dict with ``ecg_embedding`` and ``text_embedding`` (B, embed_dim, L2-normalised),
        ``logit_scale`` (exp'd, clamped scalar) and ``caption_logits`` (B, L, vocab). ``contrastive=False`` or
        ``caption=False`` skips that branch (its keys are then absent), for the loss ablations.
        ``caption_targets_only=True`` (training) returns ``caption_logits`` (N, vocab) and ``caption_targets``
        (N,) at the valid next-token positions only (see :meth:`caption_target_logits`).
        """
        self._check_text(input_ids)
        tokens = self.ecg_tokens(ecg)
        out: dict[str, torch.Tensor] = {"logit_scale": self.clamped_logit_scale()}
        if contrastive:
            out["ecg_embedding"] = self._embed_ecg(tokens)
            out["text_embedding"] = F.normalize(self.text(input_ids, attention_mask), dim=-1)
        if caption and caption_targets_only:
            out["caption_logits"], out["caption_targets"] = self.caption_target_logits(
                tokens, input_ids, attention_mask
            )
        elif caption:
            out["caption_logits"] = self.caption_logits(tokens, input_ids)
        return out

    # ------------------------------------------------------------------------------------------------- text
    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenise captions: [CLS] text [SEP], right-padded to the longest, truncated to ``max_length``."""
        if isinstance(texts, str):
            texts = [texts]
        limit = min(max_length or self.max_text_len, self.max_text_len)
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @torch.no_grad()
    def generate_ids(self, ecg: torch.Tensor, max_new_tokens: int = 40) -> torch.Tensor:
        """Greedy token ids (B, 1 + n): column 0 is the BOS ([CLS]) token; a row that emitted EOS ([SEP]) is
        padded from then on, and generation stops once every row has ended (or after ``max_new_tokens``)."""
        was_training = self.training
        self.eval()
        try:
            pooled = self.caption_pooler(self.ecg_tokens(ecg))
            bos, eos = self.text.bos_token_id, self.text.eos_token_id
            ids = torch.full((ecg.shape[0], 1), bos, dtype=torch.long, device=ecg.device)
            done = torch.zeros(ecg.shape[0], dtype=torch.bool, device=ecg.device)
            for _ in range(min(max_new_tokens, self.max_text_len - 1)):
                # No KV cache: captions are short and this keeps one code path for training and generation.
                next_ids = self.decoder.project(self.decoder.hidden(ids, pooled)[:, -1]).argmax(dim=-1)
                next_ids = next_ids.masked_fill(done, self.text.pad_token_id)
                ids = torch.cat([ids, next_ids[:, None]], dim=1)
                done |= next_ids == eos
                if bool(done.all()):
                    break
            return ids
        finally:
            self.train(was_training)

    def generate_caption(self, ecg: torch.Tensor, max_new_tokens: int = 40) -> list[str]:
        """Greedy captions for a batch of ECGs, starting from [CLS] and stopping at [SEP]."""
        ids = self.generate_ids(ecg, max_new_tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)]

    def extra_repr(self) -> str:
        return (
            f"name={self.config.name!r}, embed_dim={self.config.embed_dim}, max_text_len={self.max_text_len}"
        )


def check_logit_scale(init: float, maximum: float) -> None:
    """Reject a logit-scale bound outside (0, log 100] or an init outside (0, bound].

    An e^1 init or an unclamped scale are known defects; a bound past log 100 lets the temperature run away.
    """
    limit = math.log(100) + 1e-6
    if not (math.isfinite(maximum) and 0 < maximum <= limit):
        raise ConfigError(
            f"max_logit_scale must be in (0, log(100) = 4.605], got {maximum}; the CLIP/CoCa value is log(100)"
        )
    if not 0 < init <= maximum + 1e-6:
        raise ConfigError(
            f"init_logit_scale must be in (0, max_logit_scale = {maximum:.4g}] (at most log(100)), got {init}; "
            "the CLIP/CoCa value is log(1/0.07) = 2.659"
        )

