"""Fixtures of the registry tests: one tiny pretrained + evaluated run per session, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import pretrained_run


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Two shared cores: one intra-op thread keeps the tiny model from oversubscribing them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run_dir, evaluation_dir, store): esi_test pretrained one epoch (logged to the session's MLflow)."""
    return pretrained_run(tmp_path_factory.mktemp("registry_run"))
