"""The model behind the service and ``esi score``: embeddings, zero-shot scores, captions, text embeddings.

:class:`Engine` wraps a loaded EsiModel (CPU or GPU, chosen automatically) with the preprocessing of its
training store, the default label set and a small cache of label embeddings. The BentoML service and the
batch scorer both call it, so served and batch-scored results are the same computation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.preprocess import PreprocessConfig
from esi.errors import RequestError, ServingError
from esi.registry.pyfunc import sha256_file as file_digest  # one file hash for registry and serving
from esi.serving.inputs import RequestLimits, check_ecg, check_top_k, preprocess_batch
from esi.serving.labels import LabelSet, default_labels, plain_labels, scoring_labels

log = logging.getLogger(__name__)

INFO_KEYS = ("name", "version", "alias", "digest", "model_uri", "run_id", "source_checkpoint")


def auto_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"




def load_model_uri(uri: str, *, tracking_uri: str | None = None) -> Any:
    """An EsiModel (eval mode, ``registry_info`` set) from an MLflow URI or a checkpoint path.

    MLflow URIs go through :func:`esi.registry.load_model` (digest-checked); a checkpoint file or run folder
    is loaded directly and described by its own sha256.
    """
    text = str(uri)
    try:
        from esi.registry import load_model as registry_load  # the registry package may be absent
    except ImportError:
        registry_load = None
    if registry_load is not None:
        return registry_load(text, tracking_uri=tracking_uri)
    if text.startswith(("models:/", "runs:/")):
        raise ServingError(f"cannot load {text}: esi.registry is not available in this installation")
    from esi.models.checkpoint import load_model

    path = Path(text)
    if path.is_dir():
        path = path / "model.pt"
    model = load_model(path)
    digest = file_digest(path)
    model.registry_info = {"name": model.config.name or "esi", "version": f"ckpt-{digest[:12]}", "alias": None,
                           "digest": digest, "model_uri": str(path.resolve()), "run_id": None,
                           "source_checkpoint": str(path.resolve())}
    return model


def model_preprocess_config(model: Any) -> PreprocessConfig:
    """The preprocessing the model was trained with.

    Looked up in order: ``registry_info['preprocess']``, the checkpoint's ``preprocess`` extra, the header of
    the pretraining store; else the defaults at the model's input rate and length.
    """
    info = getattr(model, "registry_info", None) or {}
    extra = getattr(model, "checkpoint_extra", None) or {}
    candidates = [info.get("preprocess"), extra.get("preprocess")]
    store = ((extra.get("pretrain") or {}).get("config") or {}).get("store")
    if store and (Path(store) / "header.json").is_file():
        try:
            candidates.append(json.loads((Path(store) / "header.json").read_text()).get("preprocess"))
        except (OSError, ValueError):
            log.warning("unreadable header of the pretraining store %s; using default preprocessing", store)
    for cand in candidates:
        if isinstance(cand, dict) and cand:
            return preprocess_from_dict(cand)
    ecg = model.config.ecg_cfg
    return PreprocessConfig(fs=int(ecg.fs), duration_s=float(ecg.seq_len) / float(ecg.fs))


def preprocess_from_dict(data: dict[str, Any]) -> PreprocessConfig:
    """A PreprocessConfig from its dict form (a store header's ``preprocess``); unknown keys are ignored."""
    fields = {f.name for f in dataclasses.fields(PreprocessConfig)}
    return PreprocessConfig(**{k: v for k, v in data.items() if k in fields})


class Engine:
    """A served model: ``embed``, ``zero_shot``, ``caption``, ``embed_text`` on numpy in, numpy/lists out.

    Args:
        model: a loaded EsiModel (``registry_info`` describes it; see :func:`load_model_uri`).
        preprocess_config: the training preprocessing (default: :func:`model_preprocess_config`).
        device: 'cpu' / 'cuda' (default: automatic).
        limits: request limits (default: from Settings).
        batch_size: largest forward batch.
        label_cache_size: label sets whose text embeddings are kept (least recently used dropped first):
            free-text prompts differ from request to request, so the cache must not grow with them.
    """

    def __init__(self, model: Any, *, preprocess_config: PreprocessConfig | None = None, device: str | None = None,
                 limits: RequestLimits | None = None, batch_size: int = 64, label_cache_size: int = 32) -> None:
        import torch

        self.device = torch.device(device or auto_device())
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess_config or model_preprocess_config(model)
        self.limits = limits or RequestLimits.from_settings(preprocess_config=self.preprocess)
        self.batch_size = int(batch_size)
        raw = dict(getattr(model, "registry_info", None) or {})
        self.info: dict[str, Any] = {k: raw.get(k) for k in INFO_KEYS}
        self.info["name"] = self.info["name"] or "esi"
        if self.info["version"] is None and self.info["digest"]:  # a bare checkpoint: named by its digest
            self.info["version"] = f"ckpt-{str(self.info['digest'])[:12]}"
        self.default_labels = default_labels()
        from esi.settings import get_settings

        self.score_rule = str(get_settings().serve_score_rule)
        self.label_cache_size = max(1, int(label_cache_size))
        self._label_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()  # the service reads the cache from request threads

    @classmethod
    def from_uri(cls, uri: str, *, tracking_uri: str | None = None, **kwargs: Any) -> Engine:
        return cls(load_model_uri(uri, tracking_uri=tracking_uri), **kwargs)

    # ----------------------------------------------------------------------------------------------- ECGs
    @property
    def window_shape(self) -> tuple[int, int]:
        return 12, self.preprocess.n_samples

    def prepare(self, ecg: Any, fs: Any) -> np.ndarray:
        """Check and preprocess a request's ECGs -> (n, 12, n_samples) float32 windows."""
        arr, fs = check_ecg(ecg, fs, self.limits)
        return preprocess_batch(arr, fs, self.preprocess)

    def check_windows(self, windows: Any) -> np.ndarray:
        """Preprocessed windows must have exactly the training shape."""
        arr = np.asarray(windows, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[1:] != self.window_shape:
            raise RequestError(f"field 'windows' has shape {arr.shape}; expected (n, {self.window_shape[0]}, "
                               f"{self.window_shape[1]}) windows preprocessed at {self.preprocess.fs} Hz "
                               "(send raw ECGs to 'embed' instead)")
        if not np.isfinite(arr).all():
            raise RequestError("field 'windows' holds non-finite values (NaN/inf)")
        return arr

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(n, 12, n_samples) preprocessed windows -> (n, D) L2-normalised float32 embeddings."""
        import torch

        arr = self.check_windows(windows)
        out = []
        with torch.inference_mode():
            for start in range(0, len(arr), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(arr[start:start + self.batch_size])).to(self.device)
                out.append(self.model.encode_ecg(x).float().cpu().numpy())
        dim = int(self.model.config.embed_dim)
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

    def embed(self, ecg: Any, fs: Any = 500) -> np.ndarray:
        """Raw ECGs (n, 12, samples) in mV at ``fs`` -> (n, D) embeddings."""
        return self.embed_windows(self.prepare(ecg, fs))

    def caption(self, windows: np.ndarray, max_new_tokens: int = 40) -> list[str]:
        """The caption decoder's greedy description of each window."""
        import torch

        arr = self.check_windows(windows)
        out: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(arr), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(arr[start:start + self.batch_size])).to(self.device)
                out += self.model.generate_caption(x, max_new_tokens=max_new_tokens)
        return out

    # ----------------------------------------------------------------------------------------------- text
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """(len(texts), D) L2-normalised text embeddings."""
        from esi.evaluation.zeroshot import embed_texts

        return embed_texts(self.model, texts, batch_size=self.batch_size).astype(np.float32)

    def label_embeddings(self, labels: LabelSet) -> np.ndarray:
        """(C, D): per label the mean of its prompt embeddings, re-normalised (cached per label set)."""
        hit = self.cached_label_embeddings(labels)
        if hit is not None:
            return hit
        emb = mean_prompt_embeddings(labels, self.embed_text)
        with self._cache_lock:
            self._label_cache[labels.digest()] = emb
            while len(self._label_cache) > self.label_cache_size:
                self._label_cache.popitem(last=False)
        return emb

    def cached_label_embeddings(self, labels: LabelSet) -> np.ndarray | None:
        """The cached label embeddings of ``labels``, or None (no model call: safe from any thread)."""
        key = labels.digest()
        with self._cache_lock:
            hit = self._label_cache.get(key)
            if hit is not None:
                self._label_cache.move_to_end(key)
            return hit

    def label_cache_info(self) -> dict[str, int]:
        """Entries and bytes held by the label-embedding cache, and its bound."""
        with self._cache_lock:
            return {"entries": len(self._label_cache), "max_entries": self.label_cache_size,
                    "bytes": int(sum(e.nbytes for e in self._label_cache.values()))}

    def warm_up(self) -> None:
        """Compute the default label embeddings once (service start)."""
        self.label_embeddings(self.scoring_labels(self.default_labels))

    # ------------------------------------------------------------------------------------------- zero-shot
    def scoring_labels(self, labels: LabelSet) -> LabelSet:
        """The label set whose embeddings score ``labels`` under the engine's score rule."""
        return scoring_labels(labels, self.score_rule)

    def scores(self, embeddings: np.ndarray, labels: LabelSet | None = None) -> np.ndarray:
        """(n, C) zero-shot scores of ECG embeddings under the engine's score rule."""
        labels = labels or self.default_labels
        return rule_scores(embeddings, self.label_embeddings(self.scoring_labels(labels)), labels, self.score_rule)

    def zero_shot(self, embeddings: np.ndarray, labels: LabelSet | None = None, top_k: int = 5, *,
                  label_embeddings: np.ndarray | None = None) -> list[dict]:
        """Per ECG: ``scores`` {label id: score}, and ``top`` [{id, name, score}] of the top_k labels.

        ``label_embeddings``: those of ``scoring_labels(labels)`` when the caller computed them already (no model
        call here).
        """
        labels = labels or self.default_labels
        k = check_top_k(top_k, len(labels))
        lab = self.label_embeddings(self.scoring_labels(labels)) if label_embeddings is None else label_embeddings
        return [format_scores(row, labels, k) for row in rule_scores(embeddings, lab, labels, self.score_rule)]


def mean_prompt_embeddings(labels: LabelSet, embed_text: Any) -> np.ndarray:
    """(C, D): per label the re-normalised mean of its prompts' embeddings (``embed_text(texts) -> (n, D)``)."""
    flat = [p for lab in labels.labels for p in lab.prompts]
    z = np.asarray(embed_text(flat), dtype=np.float32)
    rows, k = [], 0
    for lab in labels.labels:
        m = z[k:k + len(lab.prompts)].mean(0)
        rows.append(m / max(float(np.linalg.norm(m)), 1e-12))
        k += len(lab.prompts)
    return np.stack(rows).astype(np.float32)


def cosine_scores(embeddings: np.ndarray, label_embeddings: np.ndarray) -> np.ndarray:
    """(n, C) cosine similarities (rows re-normalised)."""
    e = np.asarray(embeddings, np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e @ np.asarray(label_embeddings, np.float32).T


def rule_scores(embeddings: np.ndarray, label_embeddings: np.ndarray, labels: LabelSet, rule: str) -> np.ndarray:
    """(n, C) scores of ``labels`` under ``rule`` from the embeddings of ``scoring_labels(labels, rule)``.

    ``contrast``: cosine with the label minus cosine with the reference (the last row), except for the reference
    conditions themselves (plain cosine), as the evaluation scores zero-shot (:mod:`esi.evaluation.zeroshot`).
    """
    if rule == "cosine":
        return cosine_scores(embeddings, label_embeddings)
    lab = np.asarray(label_embeddings, np.float32)
    if lab.shape[0] != len(labels) + 1:
        raise ServingError(f"contrast scores need {len(labels) + 1} label embeddings (the labels and the reference), "
                           f"got {lab.shape[0]}")
    from esi.evaluation.zeroshot import scores

    return scores(np.asarray(embeddings, np.float32), lab[:-1], lab[-1], plain_labels(labels))


def top_indices(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (ties broken by label order)."""
    return np.argsort(-row, kind="stable")[:k]


def format_scores(row: np.ndarray, labels: LabelSet, k: int) -> dict[str, Any]:
    ids, names = labels.ids, labels.names
    top = top_indices(row, k)
    return {"scores": {ids[j]: float(row[j]) for j in range(len(ids))},
            "top": [{"id": ids[j], "name": names[j], "score": float(row[j])} for j in top]}
