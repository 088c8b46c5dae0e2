"""Fixtures of the pretraining tests: tiny stores + captions (see train_helpers), one thread per process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from train_helpers import write_captions, write_store


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Two shared cores: one intra-op thread per test process."""
    torch.set_num_threads(1)


@pytest.fixture
def make_data(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """make_data(n=32, **store_kwargs) -> (store, captions parquet) in a fresh folder."""
    counter = iter(range(1000))

    def make(n: int = 32, *, skip_captions: Sequence[int] = (), **kwargs) -> tuple[Path, Path]:
        k = next(counter)
        store = write_store(tmp_path / f"store{k}", n, **kwargs)
        captions = write_captions(tmp_path / f"captions{k}.parquet", n, skip=skip_captions)
        return store, captions

    return make


@pytest.fixture(scope="session")
def test_model_tokenize() -> Callable[..., dict]:
    """The esi_test model's tokenizer (built once per session)."""
    from esi.models import create_model

    return create_model("esi_test").tokenize
