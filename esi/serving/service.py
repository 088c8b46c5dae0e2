"""The BentoML service ``esi``: embeddings, zero-shot scores, captions and text embeddings over HTTP.

Start it with ``bentoml serve esi:latest`` (a bento from ``esi bento build``) or, for a model in the registry
without a bento, ``ESI_MODEL_URI=models:/esi@champion bentoml serve esi.serving.service:EsiService``.
Requests use the same field names everywhere: ``ecg`` ((n, 12, samples) in mV), ``fs`` (Hz), ``labels``
(vocabulary ids, names or abbreviations), ``prompts`` (free text), ``top_k``. The work is done by
:class:`esi.serving.engine.Engine`; this class adapts it to HTTP (bad input -> 4xx naming the field).
"""

import contextlib
import logging
import os
import re
import tempfile
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from bentoml.validators import DType

from esi.serving.asgi import BodyLimitMiddleware
from esi.settings import get_settings

_log = logging.getLogger(__name__)
_SETTINGS = get_settings()
# Which BentoML model the bento packs: build_bento sets it to the model it imported; inside a bento the store
# holds that one model, so the default 'esi:latest' finds it.
_MODEL_TAG = os.environ.get("ESI_BENTO_MODEL") or _SETTINGS.bento_model

FloatArray = Annotated[np.ndarray, DType("float32")]


@contextlib.contextmanager
def _http_errors():
    """RequestError -> 400 (413 for size limits) with its message; other EsiErrors -> 422."""
    from esi.errors import EsiError, RequestError
    from esi.serving.inputs import PayloadTooLarge

    try:
        yield
    except PayloadTooLarge as exc:
        raise BentoMLException(str(exc), error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
    except RequestError as exc:
        raise InvalidArgument(str(exc)) from None
    except EsiError as exc:
        raise BentoMLException(str(exc), error_code=HTTPStatus.UNPROCESSABLE_ENTITY) from None


@bentoml.service(name="esi", workers=1, traffic={"timeout": _SETTINGS.serve_timeout_s})
class EsiService:
    """ECG embeddings, zero-shot condition scores and captions from the registered ESI model."""

    model_ref = bentoml.models.BentoModel(_MODEL_TAG)

    def __init__(self) -> None:
        from esi.serving.bentostore import resolve_bento_model
        from esi.serving.engine import Engine, load_model_uri, preprocess_from_dict

        settings = get_settings()
        if settings.model_uri:
            model, preprocess = load_model_uri(settings.model_uri), None
        else:
            model, pre = resolve_bento_model(_bento_model_ref(type(self).model_ref))
            preprocess = preprocess_from_dict(pre) if pre else None
        self.engine = Engine(model, preprocess_config=preprocess, batch_size=settings.serve_max_batch_size)
        self.engine.warm_up()  # text embeddings of the default label set, once

    async def _encode(self, windows: np.ndarray) -> np.ndarray:
        """Embed windows through the batchable endpoint, so concurrent requests share forward passes."""
        import anyio
        from aiohttp import ClientConnectionError

        client = getattr(self, "to_async", None)
        if client is None:  # the class used directly, outside a server
            return self.engine.embed_windows(windows)
        for _ in range(3):  # BentoML's self-proxy (aiohttp) drops a kept-alive connection now and then
            try:
                return np.asarray(await client.encode(windows=windows), dtype=np.float32)
            except ClientConnectionError as exc:
                last = exc
        _log.warning("batched encode unreachable (%s); embedding this request unbatched", last)
        return await anyio.to_thread.run_sync(self.engine.embed_windows, windows)

    async def _prepare(self, ecg: Any, fs: float) -> np.ndarray:
        import anyio

        if getattr(self, "_prep_limiter", None) is None:
            # as many preprocessing threads as cores: more only contend (and grow malloc arenas)
            self._prep_limiter = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
        return await anyio.to_thread.run_sync(self.engine.prepare, ecg, fs, limiter=self._prep_limiter)

    async def _zero_shot(self, emb: np.ndarray, label_set: Any, top_k: int) -> list[dict]:
        import anyio

        # a new label set embeds its prompts: off the event loop
        return await anyio.to_thread.run_sync(self.engine.zero_shot, emb, label_set, top_k)

    def _model(self) -> dict[str, Any]:
        return {"name": self.engine.info["name"], "version": self.engine.info["version"]}

    @bentoml.api(batchable=True, max_batch_size=_SETTINGS.serve_max_batch_size,
                 max_latency_ms=_SETTINGS.serve_max_latency_ms)
    def encode(self, windows: FloatArray) -> np.ndarray:
        """Preprocessed windows (n, 12, n_samples at the training rate) -> (n, D) embeddings (adaptive batching)."""
        with _http_errors():
            return self.engine.embed_windows(windows)

    @bentoml.api
    async def embed(self, ecg: FloatArray, fs: float = 500.0) -> dict[str, Any]:
        """ECGs (n, 12, samples) in mV at ``fs`` Hz -> L2-normalised embeddings (n, D)."""
        with _http_errors():
            emb = await self._encode(await self._prepare(ecg, fs))
        return {"embeddings": emb.tolist(), "dim": int(emb.shape[1]), "model": self._model()}

    @bentoml.api
    async def zero_shot(self, ecg: FloatArray, fs: float = 500.0, labels: list[str] | None = None,
                        prompts: list[str] | None = None, top_k: int = _SETTINGS.serve_top_k) -> dict[str, Any]:
        """A score per label (cosine with the label's text embedding) and the top_k labels of each ECG.

        ``labels``: vocabulary ids, names or abbreviations; ``prompts``: free text; neither: the whole vocabulary.
        """
        with _http_errors():
            label_set = self._labels(labels, prompts)
            emb = await self._encode(await self._prepare(ecg, fs))
            results = await self._zero_shot(emb, label_set, top_k)
        return {"results": results, "labels": label_set.to_dict(), "model": self._model()}

    @bentoml.api
    def caption(self, ecg: FloatArray, fs: float = 500.0) -> dict[str, Any]:
        """The caption decoder's description of each ECG."""
        with _http_errors():
            captions = self.engine.caption(self.engine.prepare(ecg, fs))
        return {"captions": captions, "model": self._model()}

    @bentoml.api
    def embed_text(self, prompts: list[str]) -> dict[str, Any]:
        """Free texts -> L2-normalised text embeddings in the ECG embedding space."""
        from esi.serving.inputs import check_texts

        with _http_errors():
            texts = check_texts(prompts, "prompts", self.engine.limits)
            emb = self.engine.embed_text(texts)
        return {"embeddings": emb.tolist(), "dim": int(emb.shape[1]), "model": self._model()}

    @bentoml.api
    async def score_files(self, files: list[Path], labels: list[str] | None = None, prompts: list[str] | None = None,
                          top_k: int = _SETTINGS.serve_top_k) -> dict[str, Any]:
        """WFDB uploads (.hea + .dat/.mat, or a .zip of them) -> the zero_shot result of each record."""
        import anyio

        from esi.serving.uploads import read_uploaded_records, record_windows, stage_files

        names = [_upload_name(f) for f in files]
        with _http_errors():
            label_set = self._labels(labels, prompts)
            with tempfile.TemporaryDirectory(prefix="esi-upload-") as tmp:
                root = Path(tmp) / "upload"

                def load() -> tuple[list[str], np.ndarray]:
                    stage_files(zip(names, files, strict=True), root, self.engine.limits)
                    records = read_uploaded_records(root)
                    return [r.record_id for r in records], record_windows(records, self.engine.preprocess,
                                                                          self.engine.limits)

                ids, windows = await anyio.to_thread.run_sync(load)
            emb = await self._encode(windows)
            results = await self._zero_shot(emb, label_set, top_k)
        return {"records": ids, "results": results, "labels": label_set.to_dict(), "model": self._model()}

    @bentoml.api
    def info(self) -> dict[str, Any]:
        """Model name, version, alias, digest and URI; the default label set; preprocessing and limits."""
        import dataclasses

        e = self.engine
        return {**e.info, "labels": e.default_labels.to_dict(), "preprocess": e.preprocess.to_dict(),
                "device": str(e.device), "limits": dataclasses.asdict(e.limits), "embed_dim": e.model.config.embed_dim}

    def _labels(self, labels: list[str] | None, prompts: list[str] | None):
        from esi.serving.inputs import check_texts
        from esi.serving.labels import resolve_labels

        limits = self.engine.limits
        labels = check_texts(labels, "labels", limits, allow_empty=True) if labels is not None else None
        prompts = check_texts(prompts, "prompts", limits, allow_empty=True) if prompts is not None else None
        return resolve_labels(labels, prompts)


def _bento_model_ref(default: Any) -> Any:
    """Inside a served bento ``esi:V`` the model is ``esi:V`` (build_bento gives both the model's version)."""
    ctx = bentoml.server_context
    if ctx.bento_name == "esi" and ctx.bento_version not in ("", "not available", None):
        return bentoml.models.BentoModel(f"esi:{ctx.bento_version}")
    return default


def _upload_name(path: Path) -> str:
    """The client's base name of an upload: BentoML stores it as tempfile's 'tmp' + 8 random characters + name."""
    match = re.fullmatch(r"tmp[a-z0-9_]{8}(.+)", Path(path).name)
    return match.group(1) if match else Path(path).name


EsiService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=int(_SETTINGS.serve_max_request_mb * 2**20))
