"""Training checkpoints: the model checkpoint format plus a training section, one atomic writer, RNG states."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from esi.errors import CheckpointError
from esi.models import create_model
from esi.models.checkpoint import load_model, read_checkpoint, save_checkpoint
from esi.train.checkpointing import (
    list_checkpoints,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from esi.train.state import TrainState


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("esi_test")


def _training(step: int) -> dict:
    return {"state": TrainState(step=step, history=[{"step": step, "loss": 1.0}]).to_dict(), "rng": [rng_state()],
            "world_size": 1, "train_config": {}, "optimizer": {}, "scheduler": {}}


def test_a_training_checkpoint_is_a_model_checkpoint(model, tmp_path: Path) -> None:
    path = save_training_checkpoint(tmp_path, model, _training(5), {"pretrain": {"step": 5}})
    assert path.name == "step-000000005.pt"
    payload = read_checkpoint(path)  # weights_only=True: tensors and plain containers only
    assert payload["training"]["state"]["step"] == 5
    loaded = load_model(path)  # evaluation and the registry can read any step's checkpoint
    assert loaded.checkpoint_extra == {"pretrain": {"step": 5}}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    assert load_training_checkpoint(path)["training"]["state"]["history"] == [{"step": 5, "loss": 1.0}]
    save_checkpoint(tmp_path / "model.pt", model)
    with pytest.raises(CheckpointError, match="without training state"):
        load_training_checkpoint(tmp_path / "model.pt")


def test_only_the_newest_are_kept(model, tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        save_training_checkpoint(tmp_path, model, _training(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000003.pt", "step-000000004.pt"]


@pytest.mark.parametrize("writer", ["model", "training"])
def test_a_crash_while_writing_leaves_the_previous_file(model, tmp_path: Path, writer: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def save(path: Path) -> Path:
        if writer == "model":
            return save_checkpoint(path, model)
        return save_training_checkpoint(path.parent.parent, model, _training(7))

    target = tmp_path / "checkpoints" / "step-000000007.pt"
    save(target)
    before = target.read_bytes()
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_save({"partial": torch.zeros(3)}, f)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        save(target)
    monkeypatch.setattr(torch, "save", real_save)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_a_version_1_training_checkpoint_still_resumes(model, tmp_path: Path) -> None:
    # runs started before the single format wrote their own dict (numpy RNG arrays): still ours to read
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    path = tmp_path / "checkpoints" / "step-000000004.pt"
    path.parent.mkdir()
    torch.save({"format": "esi-train-checkpoint", "version": 1, "model_name": "esi_test",
                "model_config": model.config_dict(), "model_state": model.state_dict(), "train_config": {},
                "optimizer": {}, "scheduler": {}, "step": 4, "epoch": 1, "samples_in_epoch": 0, "world_size": 1,
                "rng": [old_rng], "history": [], "epochs": [], "nonfinite": {"consecutive": 0, "total": 2},
                "mlflow_run_id": None}, path)
    payload = load_training_checkpoint(path)
    assert payload["training"]["state"]["step"] == 4 and payload["training"]["state"]["total_bad"] == 2
    set_rng_state(payload["training"]["rng"][0])
    assert torch.equal(torch.get_rng_state(), old_rng["torch"])
