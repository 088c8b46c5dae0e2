"""Checkpoints: atomic save, round trip, strict loading that names the offending keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esi.errors import CheckpointError
from esi.models import create_model
from esi.models.checkpoint import load_model, load_state_strict, read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("esi_test", embed_dim=16).eval()
    path = tmp_path_factory.mktemp("ckpt") / "sub" / "last.pt"
    save_checkpoint(path, model, epoch=2, step=40, metrics={"loss": 1.5})
    return model, path


def test_round_trip_gives_equal_outputs(saved: tuple[torch.nn.Module, Path]) -> None:
    model, path = saved
    loaded = load_model(path)
    assert loaded.config_dict() == model.config_dict()
    assert loaded.checkpoint_extra == {"epoch": 2, "step": 40, "metrics": {"loss": 1.5}}
    torch.manual_seed(3)
    ecg = torch.randn(2, 12, 800)
    enc = model.tokenize(["sinus rhythm", "left bundle branch block"])
    a, b = model(ecg, **enc), loaded(ecg, **enc)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_save_is_atomic_and_leaves_no_temp_files(saved: tuple[torch.nn.Module, Path]) -> None:
    model, path = saved
    save_checkpoint(path, model, epoch=3)  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert read_checkpoint(path)["extra"] == {"epoch": 3}


def test_missing_and_unexpected_keys_are_named(saved: tuple[torch.nn.Module, Path]) -> None:
    model, path = saved
    state = dict(read_checkpoint(path)["state_dict"])
    state.pop("logit_scale")
    state["decoder.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(
        CheckpointError,
        match=r"missing keys \(1\): logit_scale.*unexpected keys \(1\): "
        r"decoder\.extra_head\.weight",
    ):
        load_state_strict(model, state)


def test_shape_mismatch_is_named(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    other = create_model("esi_test", embed_dim=8)
    with pytest.raises(CheckpointError, match=r"ecg_proj\.weight"):
        load_state_strict(other, read_checkpoint(path)["state_dict"])


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable ESI checkpoint"):
        load_model(junk)
    plain = tmp_path / "state.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an ESI checkpoint"):
        load_model(plain)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_checkpoint_is_self_contained_for_the_text_model(
    saved: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    # A serving container may not have the text model's hub id or mounted path: the tokenizer and text config
    # stored in the checkpoint are enough to rebuild the model.
    model, path = saved
    payload = read_checkpoint(path)
    payload["config"]["text_cfg"]["hf_model_name"] = "/nonexistent/mount/BioLinkBERT-base"
    moved = tmp_path / "moved.pt"
    torch.save(payload, moved)
    loaded = load_model(moved)
    texts = ["sinus rhythm with left axis deviation", "qrs 130 ms"]
    enc = loaded.tokenize(texts)
    assert torch.equal(enc["input_ids"], model.tokenize(texts)["input_ids"])
    assert torch.equal(loaded.encode_text(**enc), model.encode_text(**enc))
