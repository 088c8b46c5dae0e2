"""Bento build from a checkpoint, reuse on re-run, and clear errors for a missing or altered BentoML model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esi.errors import ServingError


def test_build_from_a_checkpoint_then_reuse(tiny_checkpoint: Path, bentoml_home: Path, engine) -> None:
    import bentoml

    from esi.serving.build import build_bento

    tag = build_bento(str(tiny_checkpoint))
    assert tag == f"esi:{engine.info['version']}" and tag.startswith("esi:ckpt-")
    bento = bentoml.bentos.get(tag)
    assert Path(bento.path).is_relative_to(bentoml_home)  # BENTOML_HOME, never ~/bentoml
    assert [str(m.tag) for s in bento.info.services for m in s.models] == [tag]
    assert build_bento(str(tiny_checkpoint)) == tag  # the model and the bento are reused

    from typer.testing import CliRunner

    from esi.cli import app

    res = CliRunner().invoke(app, ["bento", "build", "--model", str(tiny_checkpoint)])
    assert res.exit_code == 0, res.output
    assert f"bento: {tag}" in res.output and f"BENTOML_HOME={bentoml_home} bentoml serve {tag}" in res.output


def test_missing_bento_model_is_a_clear_error_not_a_cloud_lookup(bentoml_home: Path) -> None:
    import bentoml

    from esi.serving.bentostore import bentoml_home as home
    from esi.serving.bentostore import resolve_bento_model

    home()
    with pytest.raises(ServingError, match=r"esi:nope is not in the model store .*esi bento build.*ESI_MODEL_URI"):
        resolve_bento_model(bentoml.models.BentoModel("esi:nope"))


def test_altered_checkpoint_in_the_store_is_refused(tiny_checkpoint: Path, bentoml_home: Path,
                                                    tmp_path: Path) -> None:
    from esi.serving.bentostore import MODEL_FILE, import_model, load_stored_model, stored_model
    from esi.serving.engine import load_model_uri

    tag, _ = import_model(load_model_uri(str(tiny_checkpoint)), {"fs": 500})
    copy = tmp_path / "model"
    shutil.copytree(stored_model(tag).path, copy)
    model, pre = load_stored_model(copy)
    assert pre["fs"] == 500 and model.registry_info["version"].startswith("ckpt-")
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[-100] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ServingError, match="was altered"):
        load_stored_model(copy)


def test_a_stale_model_of_the_same_tag_is_not_replaced(tiny_checkpoint: Path, bentoml_home: Path) -> None:
    import torch

    from esi.models import create_model
    from esi.serving.bentostore import import_model

    torch.manual_seed(1)
    other = create_model("esi_test", text_pretrained=False)
    other.registry_info = {"name": "esi", "version": "stale-test", "digest": "aaaa"}
    assert import_model(other, {})[1] is True
    other.registry_info = {"name": "esi", "version": "stale-test", "digest": "bbbb"}
    with pytest.raises(ServingError, match="already exists with weights digest aaaa"):
        import_model(other, {})
