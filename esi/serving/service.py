"""The BentoML service ``esi``: embeddings, zero-shot scores, captions and text embeddings over HTTP.

Start it with ``bentoml serve esi:latest`` (a bento from ``esi bento build``) or, for a model in the registry
without a bento, ``ESI_MODEL_URI=models:/esi@champion bentoml serve esi.serving.service:EsiService``.
Requests use the same field names everywhere: ``ecg`` ((n, 12, samples) in mV), ``fs`` (Hz), ``labels``
(vocabulary ids, names or abbreviations), ``prompts`` (free text), ``top_k``. The work is done by
:class:`esi.serving.engine.Engine`; this class adapts it to HTTP (bad input -> 4xx naming the field).
"""

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from bentoml.validators import DType

from esi.serving.asgi import BodyLimitMiddleware
from esi.serving.batching import Overloaded, WindowBatcher
from esi.serving.malloc import limit_arenas
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
    except Overloaded as exc:
        raise BentoMLException(str(exc), error_code=HTTPStatus.SERVICE_UNAVAILABLE) from None
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
        limit_arenas(2)  # before the worker's threads start (see esi.serving.malloc)
        if settings.model_uri:
            model, preprocess = load_model_uri(settings.model_uri), None
        else:
            model, pre = resolve_bento_model(_bento_model_ref(type(self).model_ref))
            preprocess = preprocess_from_dict(pre) if pre else None
        self.engine = Engine(model, preprocess_config=preprocess, batch_size=settings.serve_max_batch_size)
        # every torch call of this worker runs on the batcher's model thread (see esi.serving.batching); request
        # checks and preprocessing on a fixed pool of one thread per core (more only contend, and each new
        # thread that allocates large arrays can add a malloc arena)
        self.batcher = WindowBatcher(self.engine.embed_windows, max_batch_size=settings.serve_max_batch_size,
                                     max_latency_ms=settings.serve_max_latency_ms, observe=_batch_histogram())
        self._pool = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="esi-prep")
        self.batcher.run_sync(self.engine.warm_up)  # text embeddings of the default label set, once
        _log.info("ESI service: model %s version %s on %s, %d torch threads, batches of up to %d windows",
                  self.engine.info["name"], self.engine.info["version"], self.engine.device, _torch_threads(),
                  settings.serve_max_batch_size)

    async def _batched(self, prepare: Any, *args: Any) -> np.ndarray:
        """``prepare(*args)`` -> windows off the event loop, then their embeddings from a shared forward pass."""
        with self.batcher.expecting():  # a batch about to start waits for these windows
            windows = await self._in_thread(prepare, *args)
        return await self.batcher.embed(windows)

    async def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` on the request pool (checks, preprocessing, formatting), in the request's context."""
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def _embed_ecg(self, ecg: Any, fs: float) -> np.ndarray:
        return await self._batched(self.engine.prepare, ecg, fs)

    async def _embed_npy(self, path: Path, fs: float) -> np.ndarray:
        from esi.serving.inputs import read_npy

        def prepare() -> np.ndarray:
            return self.engine.prepare(read_npy(path, self.engine.limits), fs)

        return await self._batched(prepare)

    async def _scores(self, emb: np.ndarray, label_set: Any, top_k: int) -> dict[str, Any]:
        scoring = self.engine.scoring_labels(label_set)
        lab = self.engine.cached_label_embeddings(scoring)
        if lab is None:  # a new label set: a text forward, on the model thread
            lab = await self.batcher.run(self.engine.label_embeddings, scoring)
        results = await self._in_thread(self.engine.zero_shot, emb, label_set, top_k, label_embeddings=lab)
        return {"results": results, "labels": label_set.to_dict(), "score_rule": self.engine.score_rule,
                "model": self._model()}

    def _embeddings(self, emb: np.ndarray) -> dict[str, Any]:
        return {"embeddings": emb.tolist(), "dim": int(emb.shape[1]), "model": self._model()}

    def _model(self) -> dict[str, Any]:
        return {"name": self.engine.info["name"], "version": self.engine.info["version"]}

    @bentoml.api
    async def encode(self, windows: FloatArray) -> np.ndarray:
        """Preprocessed windows (n, 12, n_samples at the training rate) -> (n, D) embeddings (batched)."""
        with _http_errors():
            return await self._batched(self.engine.check_windows, windows)

    @bentoml.api
    async def embed(self, ecg: FloatArray, fs: float = 500.0) -> dict[str, Any]:
        """ECGs (n, 12, samples) in mV at ``fs`` Hz -> L2-normalised embeddings (n, D)."""
        with _http_errors():
            emb = await self._embed_ecg(ecg, fs)
        return self._embeddings(emb)

    @bentoml.api
    async def embed_npy(self, ecg: Path, fs: float = 500.0) -> dict[str, Any]:
        """``embed`` with ``ecg`` uploaded as a .npy file (numpy.save; multipart): no JSON lists to parse."""
        with _http_errors():
            emb = await self._embed_npy(ecg, fs)
        return self._embeddings(emb)

    @bentoml.api
    async def zero_shot(self, ecg: FloatArray, fs: float = 500.0, labels: list[str] | None = None,
                        prompts: list[str] | None = None, top_k: int = _SETTINGS.serve_top_k) -> dict[str, Any]:
        """A score per label (cosine with the label's text embedding) and the top_k labels of each ECG.

        ``labels``: vocabulary ids, names or abbreviations; ``prompts``: free text; neither: the whole vocabulary.
        """
        with _http_errors():
            label_set = self._labels(labels, prompts)
            emb = await self._embed_ecg(ecg, fs)
            return await self._scores(emb, label_set, top_k)

    @bentoml.api
    async def zero_shot_npy(self, ecg: Path, fs: float = 500.0, labels: list[str] | None = None,
                            prompts: list[str] | None = None, top_k: int = _SETTINGS.serve_top_k) -> dict[str, Any]:
        """``zero_shot`` with ``ecg`` uploaded as a .npy file (numpy.save; multipart)."""
        with _http_errors():
            label_set = self._labels(labels, prompts)
            emb = await self._embed_npy(ecg, fs)
            return await self._scores(emb, label_set, top_k)

    @bentoml.api
    async def caption(self, ecg: FloatArray, fs: float = 500.0) -> dict[str, Any]:
        """The caption decoder's description of each ECG."""
        with _http_errors():
            windows = await self._in_thread(self.engine.prepare, ecg, fs)
            captions = await self.batcher.run(self.engine.caption, windows)
        return {"captions": captions, "model": self._model()}

    @bentoml.api
    async def embed_text(self, prompts: list[str]) -> dict[str, Any]:
        """Free texts -> L2-normalised text embeddings in the ECG embedding space."""
        from esi.serving.inputs import check_texts

        with _http_errors():
            texts = check_texts(prompts, "prompts", self.engine.limits)
            emb = await self.batcher.run(self.engine.embed_text, texts)
        return {"embeddings": emb.tolist(), "dim": int(emb.shape[1]), "model": self._model()}

    @bentoml.api
    async def score_files(self, files: list[Path], labels: list[str] | None = None, prompts: list[str] | None = None,
                          top_k: int = _SETTINGS.serve_top_k) -> dict[str, Any]:
        """WFDB uploads (.hea + .dat/.mat, or a .zip of them) -> the zero_shot result of each record."""
        from esi.serving.uploads import read_uploaded_records, record_windows, stage_files

        names = [_upload_name(f) for f in files]
        with _http_errors():
            label_set = self._labels(labels, prompts)
            ids: list[str] = []

            def load() -> np.ndarray:
                with tempfile.TemporaryDirectory(prefix="esi-upload-") as tmp:
                    root = Path(tmp) / "upload"
                    stage_files(zip(names, files, strict=True), root, self.engine.limits)
                    records = read_uploaded_records(root)
                    ids.extend(r.record_id for r in records)
                    return record_windows(records, self.engine.preprocess, self.engine.limits)

            emb = await self._batched(load)
            return {"records": ids, **await self._scores(emb, label_set, top_k)}

    @bentoml.api
    def info(self) -> dict[str, Any]:
        """Model name, version, alias, digest and URI; the default label set; preprocessing and limits."""
        import dataclasses

        e = self.engine
        batching = {"max_batch_size": self.batcher.max_batch_size,
                    "max_latency_ms": self.batcher.max_latency_s * 1000, **self.batcher.stats.to_dict()}
        return {**e.info, "labels": e.default_labels.to_dict(), "score_rule": e.score_rule,
                "preprocess": e.preprocess.to_dict(),
                "device": str(e.device), "torch_threads": _torch_threads(), "limits": dataclasses.asdict(e.limits),
                "embed_dim": e.model.config.embed_dim, "batching": batching, "label_cache": e.label_cache_info()}

    def _labels(self, labels: list[str] | None, prompts: list[str] | None):
        from esi.serving.inputs import check_texts
        from esi.serving.labels import resolve_labels

        limits = self.engine.limits
        labels = check_texts(labels, "labels", limits, allow_empty=True) if labels is not None else None
        prompts = check_texts(prompts, "prompts", limits, allow_empty=True) if prompts is not None else None
        if not labels and not prompts:  # built once at start: rebuilding it reads every corpus file again
            return self.engine.default_labels
        return resolve_labels(labels, prompts)


@functools.cache
def _batch_histogram() -> Any:
    """Observe of a Prometheus histogram of forward batch sizes (on /metrics), created once per process.

    Created at service start, not import: BentoML sets the multiprocess metrics folder after importing the
    module, and prometheus_client must see it.
    """
    import prometheus_client

    return prometheus_client.Histogram("esi_forward_batch_size", "ECG windows per forward pass of the ESI service",
                                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)).observe


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


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
