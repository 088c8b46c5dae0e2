"""The BentoML class called directly (no server): ESI_MODEL_URI loading, thin endpoints, 4xx mapping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from bentoml.exceptions import BentoMLException, InvalidArgument
from serving_helpers import ecg_batch


@pytest.fixture(scope="module")
def service(tiny_checkpoint: Path, bentoml_home: Path):
    import os

    from esi.settings import get_settings

    os.environ["ESI_MODEL_URI"] = str(tiny_checkpoint)
    get_settings.cache_clear()
    try:
        from esi.serving.service import EsiService

        yield EsiService()
    finally:
        os.environ.pop("ESI_MODEL_URI", None)
        get_settings.cache_clear()


def test_model_uri_is_loaded_and_endpoints_answer(service, engine) -> None:
    x = ecg_batch(2)
    out = asyncio.run(service.embed(ecg=x, fs=500.0))
    np.testing.assert_allclose(np.asarray(out["embeddings"]), engine.embed(x, 500), rtol=1e-5, atol=1e-6)
    assert service.info()["digest"] == engine.info["digest"]
    res = asyncio.run(service.zero_shot(ecg=x, fs=500.0, labels=["AF"], prompts=None, top_k=1))
    assert res["labels"]["ids"] == ["164889003"] and len(res["results"]) == 2


def test_npy_endpoints_equal_the_json_ones(service, tmp_path: Path) -> None:
    x = ecg_batch(2)
    path = tmp_path / "x.npy"
    np.save(path, x)
    js = asyncio.run(service.embed(ecg=x, fs=500.0))["embeddings"]
    npy = asyncio.run(service.embed_npy(ecg=path, fs=500.0))["embeddings"]
    np.testing.assert_allclose(np.asarray(npy), np.asarray(js), rtol=1e-6, atol=1e-7)
    a = asyncio.run(service.zero_shot_npy(ecg=path, fs=500.0, labels=["AF", "RBBB"], prompts=None, top_k=2))
    b = asyncio.run(service.zero_shot(ecg=x, fs=500.0, labels=["AF", "RBBB"], prompts=None, top_k=2))
    assert a["results"] == b["results"] and a["labels"] == b["labels"]
    info = service.info()
    assert info["batching"]["windows"] >= 8 and info["torch_threads"] >= 1


def test_errors_map_to_http_status(service) -> None:
    with pytest.raises(InvalidArgument, match="field 'ecg' has 3 leads"):
        asyncio.run(service.embed(ecg=np.zeros((1, 3, 5000), np.float32), fs=500.0))
    with pytest.raises(BentoMLException) as info:
        asyncio.run(service.embed(ecg=np.zeros((300, 12, 1000), np.float32), fs=500.0))
    assert info.value.error_code == 413
    with pytest.raises(InvalidArgument, match="field 'prompts'"):
        asyncio.run(service.embed_text(prompts=[]))
