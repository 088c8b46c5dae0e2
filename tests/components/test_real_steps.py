"""The real-ECG benchmark steps of esi_full as component functions: the mix pretrain passes, and the skip path.

Catches: a pretrain step that drops the real store from PretrainConfig.mix (or mixes it in with mix_real off),
a caption step that writes the real captions over the run's own, and a disabled real benchmark that still
writes (or registers) something. The enabled path runs for real in the kfp.local end-to-end test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.caption.component import caption  # noqa: E402
from components.evaluate.component import evaluate_real  # noqa: E402
from components.prepare.component import prepare_real  # noqa: E402
from components.pretrain.component import pretrain  # noqa: E402


def art(cls, path: Path, metadata: dict | None = None):
    return cls(uri=str(path), metadata=dict(metadata or {}))


@pytest.fixture()
def launched(monkeypatch: pytest.MonkeyPatch) -> list:
    """run_pretrain replaced by a recorder: the config the launcher (and so a cluster job) would get."""
    import esi.pipeline.launcher as launcher

    configs: list = []

    def run_pretrain(config, **kw):
        configs.append((config, kw))
        return {"checkpoint": f"{config.out}/model.pt", "run_dir": config.out, "launcher": kw["launcher"]}

    monkeypatch.setattr(launcher, "run_pretrain", run_pretrain)
    return configs


def test_pretrain_mixes_the_captioned_real_store(launched: list, tmp_path: Path) -> None:
    store = art(Dataset, tmp_path / "s", {"path": "/w/store"})
    caps = art(Dataset, tmp_path / "c", {"path": "/w/captions.parquet"})
    real = art(Dataset, tmp_path / "rs", {"path": "/w/real_store"})
    real_caps = art(Dataset, tmp_path / "rc", {"path": "/w/real_captions.parquet"})
    model = art(Model, tmp_path / "m")
    pretrain.python_func(work_root=str(tmp_path), store=store, captions=caps, model=model, real_store=real,
                         real_captions=real_caps, launcher="pytorchjob", model_config="esi_test")
    config, kw = launched[-1]
    assert config.mix == [{"store": "/w/real_store", "captions": "/w/real_captions.parquet"}]
    assert (config.store, config.folds, kw["launcher"]) == ("/w/store", list(range(1, 9)), "pytorchjob")
    assert model.metadata["mix"] == ["/w/real_store"]
    pretrain.python_func(work_root=str(tmp_path), store=store, captions=caps, model=model, real_store=real,
                         real_captions=real_caps, mix_real=False, model_config="esi_test")
    assert launched[-1][0].mix == [] and model.metadata["mix"] == []
    pretrain.python_func(work_root=str(tmp_path), store=store, captions=caps, model=model, model_config="esi_test")
    assert launched[-1][0].mix == []  # no real inputs wired at all


def test_disabled_real_benchmark_skips_every_real_step(launched: list, tmp_path: Path) -> None:
    work = tmp_path / "work"
    real = art(Dataset, tmp_path / "real")
    prepare_real.python_func(work_root=str(work), store=real, enabled=False)
    assert real.metadata == {"path": "", "records": 0, "skipped": "real_benchmark=False"}
    kb = art(Artifact, tmp_path / "kb", {"path": str(work / "kb")})
    real_caps = art(Dataset, tmp_path / "rc")
    caption.python_func(work_root=str(work), store=real, kb=kb, captions=real_caps, part="real")
    assert real_caps.metadata["path"] == "" and real_caps.metadata["skipped"] == "real_benchmark=False"
    assert not (work / "real_captions.parquet").exists() and not (work / "real_store").exists()
    outs = [art(cls, tmp_path / n) for cls, n in ((Metrics, "m"), (Markdown, "md"), (HTML, "h"), (Artifact, "e"))]
    model = art(Model, tmp_path / "model", {"checkpoint": "/nonexistent/model.pt"})  # never loaded when skipped
    evaluate_real.python_func(work_root=str(work), model=model, store=real, metrics=outs[0], report_md=outs[1],
                              report_html=outs[2], evaluation=outs[3])
    assert "not run" in Path(outs[1].path).read_text() and "real_benchmark=False" in Path(outs[2].path).read_text()
    assert json.loads(Path(outs[3].path).read_text())["path"] == "" and outs[3].metadata["path"] == ""
    assert not (work / "evaluation_real").exists()
    pretrain.python_func(work_root=str(work), store=art(Dataset, tmp_path / "s", {"path": "/w/store"}),
                         captions=art(Dataset, tmp_path / "c", {"path": "/w/c.parquet"}),
                         model=art(Model, tmp_path / "p"), real_store=real, real_captions=real_caps,
                         model_config="esi_test")
    assert launched[-1][0].mix == []
