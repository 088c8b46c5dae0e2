"""The pretraining loop end to end on the esi_test model and tiny stores (single process)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_helpers import write_captions, write_store

from esi.errors import ConfigError, TrainingError
from esi.train.config import PretrainConfig
from esi.train.loop import pretrain


def _config(store: Path, captions: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(model="esi_test", store=str(store), captions=str(captions), out=str(out), epochs=2,
                batch_size=8, lr=2e-3, warmup_epochs=0.5, decay_every=10, checkpoint_every_steps=0,
                num_workers=0, mlflow=False)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pretrain_data")
    return write_store(root / "store", 32), write_captions(root / "captions.parquet", 32)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted 2-epoch run (8 steps)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("baseline") / "run"
    return pretrain(_config(*data, out), progress=False)


def test_two_epochs_lower_the_loss_and_write_a_loadable_model(baseline) -> None:
    from esi.models.checkpoint import load_model

    r = baseline
    assert r.completed and r.steps == 8 and len(r.history) == 8 and len(r.epochs) == 2
    assert r.epochs[1]["loss"] < r.epochs[0]["loss"]
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    assert r.samples_per_s > 0 and r.mlflow_run_id is None
    assert not r.compiled and r.compile_warmup_s == 0  # compile=auto: 8 steps on CPU stay eager
    model = load_model(r.final_checkpoint)
    assert model.checkpoint_extra["pretrain"]["step"] == 8
    saved = json.loads((r.run_dir / "history.json").read_text())
    assert [h["loss"] for h in saved["steps"]] == pytest.approx([h["loss"] for h in r.history])
    assert (r.run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert PretrainConfig.from_json(r.run_dir / "config.json").model == "esi_test"
    # one checkpoint per epoch, the last two kept, written atomically (no temporary files left)
    assert sorted(p.name for p in (r.run_dir / "checkpoints").iterdir()) == ["step-000000004.pt",
                                                                           "step-000000008.pt"]
    # warm-up over half an epoch (2 steps), then the peak lr
    assert [h["lr"] for h in r.history[:3]] == pytest.approx([1e-3, 2e-3, 2e-3])


def test_resume_reproduces_the_uninterrupted_run(data, baseline, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    first = pretrain(_config(*data, out, max_steps=3), progress=False)
    assert not first.completed and first.steps == 3
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000000003.pt"]
    assert [h["loss"] for h in first.history] == pytest.approx([h["loss"] for h in baseline.history[:3]],
                                                               rel=1e-6)
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(_config(*data, out), progress=False)  # a run dir with checkpoints needs --resume
    with pytest.raises(ConfigError, match="batch_size"):
        pretrain(_config(*data, out, batch_size=4, resume=True), progress=False)
    # resuming needs no text model: the checkpoint's weights, text config and tokenizer rebuild it
    import esi.models.text

    def no_text_model(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the text model was looked up")

    monkeypatch.setattr(esi.models.text, "load_text_backbone", no_text_model)
    from esi.models import create_model

    with pytest.raises(AssertionError, match="looked up"):
        create_model("esi_test")  # a fresh build does need it
    second = pretrain(_config(*data, out, resume=True), progress=False)
    assert second.completed and second.steps == 8
    resumed = [h["loss"] for h in second.history]
    assert resumed == pytest.approx([h["loss"] for h in baseline.history], rel=1e-5)
    a = torch.load(second.final_checkpoint, weights_only=True)["state_dict"]
    b = torch.load(baseline.final_checkpoint, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    # resuming a finished run trains no further
    again = pretrain(_config(*data, out, resume=True), progress=False)
    assert again.steps == 8 and again.completed


def test_non_finite_steps_are_skipped_then_stop_training(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s1", 16, nan_rows=[0])
    caps = write_captions(tmp_path / "c1.parquet", 16)
    r = pretrain(_config(store, caps, tmp_path / "r1", epochs=1, augment={"noise_std": 0.0}), progress=False)
    skipped = [h for h in r.history if h["skipped"]]
    assert len(skipped) == 1 and skipped[0]["loss"] is None  # the batch holding the NaN record
    assert len(r.history) == 2
    from esi.models.checkpoint import load_model

    assert all(torch.isfinite(p).all() for p in load_model(r.final_checkpoint).parameters())

    store = write_store(tmp_path / "s2", 16, nan_rows=list(range(16)))
    caps = write_captions(tmp_path / "c2.parquet", 16)
    with pytest.raises(TrainingError, match="2 consecutive steps"):
        pretrain(_config(store, caps, tmp_path / "r2", epochs=2, max_nonfinite_steps=2), progress=False)


def test_ablation_freezes_the_unused_branch_bit_for_bit(data, tmp_path: Path) -> None:
    from esi.models import create_model
    from esi.models.checkpoint import load_model

    r = pretrain(_config(*data, tmp_path / "run", epochs=1, lambda_cap=0.0, grad_accum=2), progress=False)
    assert r.steps == 2  # 4 micro-batches of 8, 2 per step
    assert all(h["caption"] == 0.0 and h["contrastive"] > 0 for h in r.history)
    torch.manual_seed(0)  # the run's seed: its initial weights
    initial = create_model("esi_test").state_dict()
    trained = load_model(r.final_checkpoint).state_dict()
    unused = [k for k in initial if k.startswith(("decoder.", "caption_pooler."))]
    assert unused and all(torch.equal(trained[k], initial[k]) for k in unused)  # AdamW decay would move them
    assert not torch.equal(trained["ecg_proj.weight"], initial["ecg_proj.weight"])  # the rest did train


def test_frozen_encoder_stages_keep_their_initial_weights_bit_for_bit(data, tmp_path: Path) -> None:
    from esi.models import create_model
    from esi.models.checkpoint import load_model

    r = pretrain(_config(*data, tmp_path / "run", epochs=1, freeze_ecg_stages=3), progress=False)
    torch.manual_seed(0)  # the run's seed: its initial weights
    initial = create_model("esi_test").state_dict()
    trained = load_model(r.final_checkpoint).state_dict()
    frozen = [k for k in initial if k.startswith(tuple(f"ecg_encoder.{p}.{i}." for p in ("downsample", "stages")
                                                       for i in range(3)))]
    assert len(frozen) > 10 and all(torch.equal(trained[k], initial[k]) for k in frozen)  # decay would move them
    # The fourth stage, its downsampling and everything after the encoder still train.
    for k in ("ecg_encoder.stages.3.0.pwconv1.weight", "ecg_encoder.downsample.3.1.weight", "ecg_proj.weight"):
        assert not torch.equal(trained[k], initial[k]), k
    assert json.loads((Path(r.run_dir) / "config.json").read_text())["freeze_ecg_stages"] == 3


def test_freezing_more_stages_than_the_encoder_has_or_a_negative_count_is_refused(data, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="freeze_ecg_stages=5: the encoder has 4 stages; expected 0-4"):
        pretrain(_config(*data, tmp_path / "run", epochs=1, freeze_ecg_stages=5), progress=False)
    with pytest.raises(ConfigError, match="freeze_ecg_stages=-1"):
        _config(*data, tmp_path / "run", freeze_ecg_stages=-1).validate()


def test_an_encoder_without_stages_cannot_be_frozen() -> None:
    from esi.models import create_model
    from esi.train.freeze import freeze_encoder_stages

    model = create_model("esi_test_vit")
    with pytest.raises(ConfigError, match="encoder has no stages to freeze"):
        freeze_encoder_stages(model, 1)
    assert all(p.requires_grad for p in model.parameters())


def test_mlflow_run_is_recorded(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from esi.settings import get_settings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("ESI_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        r = pretrain(_config(*data, tmp_path / "run", epochs=1, mlflow=True, experiment="esi-test",
                             log_every_steps=2), progress=False)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(r.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.002" and run.data.params["n_records"] == "32"
    losses = client.get_metric_history(r.mlflow_run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]
    assert [m.value for m in losses] == pytest.approx([h["loss"] for h in r.history])
    assert {"lr", "logit_scale", "samples_per_s", "contrastive", "caption"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(r.mlflow_run_id)}
    assert {"model.pt", "loss.png", "history.json"} <= artifacts
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith((tmp_path / "home").resolve().as_uri())
    assert not math.isnan(run.data.metrics["loss"])


def test_worker_processes_do_not_change_the_run(data, baseline, tmp_path: Path) -> None:
    # augmentation draws are keyed by (seed, epoch, position), not by a worker's RNG
    r = pretrain(_config(*data, tmp_path / "run", num_workers=2, max_steps=2), progress=False)
    expected = [h["loss"] for h in baseline.history[:2]]
    assert [h["loss"] for h in r.history] == pytest.approx(expected, rel=1e-6)
