"""The registry on the SQLite store in ESI_HOME: register -> promote -> refusals -> load, card, tampering, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from esi.errors import RegistryError
from esi.registry import load_model, load_reference, promote, register_run

ZS = "synthetic.superdiagnostic.zero_shot.macro_auc"
LP = "synthetic.superdiagnostic.linear_probe_100pct.macro_auc"


def _client():
    from esi.registry.tracking import client

    return client()


def _aliases(name: str) -> dict[str, int]:
    return {k: int(v) for k, v in _client().get_registered_model(name).aliases.items()}


def _eval_metrics(eval_dir: Path) -> dict:
    return json.loads((eval_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def registered(run):
    run_dir, eval_dir, _ = run
    return register_run(run_dir, [eval_dir], "esi-rt")


def test_register_logs_metrics_provenance_and_candidate(registered, run) -> None:
    run_dir, eval_dir, store = run
    reg = registered
    assert reg.created and reg.version == 1 and reg.model_uri == "models:/esi-rt/1"
    modes = _eval_metrics(eval_dir)["modes"]
    # The evaluation's numbers, under <benchmark>.<task>.<mode>.<metric>, on the version and the logged model.
    assert reg.metrics[ZS] == modes["zero_shot"]["macro_auc"]
    assert reg.metrics[LP] == modes["linear_probe"]["fractions"]["1"]["macro_auc"]
    mlc = _client()
    mv = mlc.get_model_version("esi-rt", "1")
    assert float(mv.tags[f"metric.{ZS}"]) == modes["zero_shot"]["macro_auc"]
    assert mv.tags["checkpoint_digest"] == reg.digest == _eval_metrics(eval_dir)["model"]["digest"]
    assert json.loads(mv.tags["data.folds"]) == list(range(1, 9))
    assert mv.tags["data.store"] == str(store) and mv.tags["data.store_digest"] != "unknown"
    assert mv.tags["data.synthetic_only"] == "True"
    assert _aliases("esi-rt") == {"candidate": 1}
    logged = {m.key: m.value for m in mlc.get_logged_model(reg.model_id).metrics}
    assert logged[ZS] == modes["zero_shot"]["macro_auc"]
    # The model is logged into the pretraining run (it lives in this tracking store).
    ckpt_run = torch.load(run_dir / "model.pt", weights_only=True)["extra"]["pretrain"]["mlflow_run_id"]
    assert reg.run_id == ckpt_run
    # Artifacts under ESI_HOME, never ./mlruns.
    from esi.settings import get_settings

    assert str(get_settings().home.resolve()) in mlc.get_logged_model(reg.model_id).artifact_location


def test_model_card_holds_the_logged_numbers(registered, run) -> None:
    run_dir, eval_dir, store = run
    card = registered.card_path.read_text()
    mv = _client().get_model_version("esi-rt", "1")
    assert mv.description == card
    m = _eval_metrics(eval_dir)
    zs = m["modes"]["zero_shot"]
    low, high = zs["ci95"]
    row = f"| synthetic | superdiagnostic | zero_shot | macro_auc | {zs['macro_auc']:.4f} | [{low:.4f}, {high:.4f}] |"
    assert row in card
    lp = m["modes"]["linear_probe"]["fractions"]["1"]
    assert f"| linear_probe_100pct | macro_auc | {lp['macro_auc']:.4f} |" in card
    from esi.data.store import open_store
    from esi.models.checkpoint import load_model as load_checkpoint

    s = open_store(store)
    n_used = len(s.indices(folds=list(range(1, 9))))
    assert f"| synthetic | {n_used} |" in card  # records per source, of the folds used
    assert f"{n_used} records of {len(s)} used" in card
    assert "folds used for pretraining: [1, 2, 3, 4, 5, 6, 7, 8]" in card
    assert "rate 500 Hz, window 1 s (500 samples" in card and "high-pass 0.5000 Hz" in card
    n_params = sum(p.numel() for p in load_checkpoint(run_dir / "model.pt").parameters())
    assert f"{n_params:,} parameters" in card
    assert registered.digest in card
    assert "Pretrained on synthetic data only" in card
    assert f"Drift reference: {min(512, n_used)} pretraining records" in card


def test_load_by_alias_equals_in_process(registered, run) -> None:
    import mlflow

    from esi.models.checkpoint import load_model as load_checkpoint

    run_dir, _, store = run
    reference = load_checkpoint(run_dir / "model.pt")
    model = load_model("models:/esi-rt@candidate")
    info = model.registry_info
    assert info["name"] == "esi-rt" and info["version"] == 1 and info["alias"] == "candidate"
    assert info["digest"] == registered.digest and info["model_uri"] == "models:/esi-rt@candidate"
    assert info["source_checkpoint"] == str((run_dir / "model.pt").resolve()) and info["run_id"] == registered.run_id
    assert not model.training
    # What it was pretrained on comes back with it (evaluation's contamination check and MMD reference read it).
    assert model.checkpoint_extra["pretrain"]["config"]["folds"] == reference.checkpoint_extra["pretrain"][
        "config"]["folds"]
    x = torch.from_numpy(np.random.default_rng(3).normal(0, 0.3, (3, 12, 500)).astype(np.float32))
    with torch.no_grad():
        expected = reference.encode_ecg(x).numpy()
        assert np.allclose(model.encode_ecg(x).numpy(), expected, atol=1e-6)
    pyfunc = mlflow.pyfunc.load_model("models:/esi-rt@candidate")
    got = pyfunc.predict(x.numpy())
    assert got.shape == (3, 32) and np.allclose(got, expected, atol=1e-5)
    # The reference embeddings are the model's embeddings of pretraining-fold records.
    ref = load_reference("models:/esi-rt/1")
    from esi.data.store import open_store

    s = open_store(store)
    idx = s.indices(folds=list(range(1, 9)))
    assert ref.shape == (len(idx), 32)
    with torch.no_grad():
        first = reference.encode_ecg(torch.from_numpy(s.signals(idx[:4]))).numpy()
    assert np.allclose(ref[:4], first, atol=1e-5)


def test_reregistering_the_same_checkpoint_returns_the_version(registered, run) -> None:
    run_dir, eval_dir, _ = run
    again = register_run(run_dir, [eval_dir], "esi-rt")
    assert not again.created and again.version == registered.version and again.digest == registered.digest
    assert len(_client().search_model_versions("name='esi-rt'")) == 1


def _worse_version(run, tmp_path: Path, name: str, delta: float) -> int:
    """A second checkpoint (other weights) with an evaluation whose zero-shot AUC is ``delta`` lower."""
    from esi.evaluation.embed import model_digest
    from esi.models.checkpoint import load_model as load_checkpoint
    from esi.models.checkpoint import read_checkpoint, save_checkpoint

    run_dir, eval_dir, _ = run
    model = load_checkpoint(run_dir / "model.pt")
    with torch.no_grad():
        model.ecg_proj.weight.mul_(0.5)
    extra = read_checkpoint(run_dir / "model.pt")["extra"]
    save_checkpoint(tmp_path / "run2" / "model.pt", model, **extra)
    metrics = _eval_metrics(eval_dir)
    metrics["model"]["digest"] = model_digest(model)
    metrics["modes"]["zero_shot"]["macro_auc"] -= delta
    (tmp_path / "eval2").mkdir()
    (tmp_path / "eval2" / "metrics.json").write_text(json.dumps(metrics))
    return register_run(tmp_path / "run2", [tmp_path / "eval2"], name, reference_records=0).version


def test_promotion_gates_and_refusals(registered, run, tmp_path: Path) -> None:
    mlc = _client()
    observed = registered.metrics[ZS]
    # Passes (no champion yet: the comparison passes and says so).
    ok = promote("esi-rt", alias="candidate", to="champion", require=[f"{ZS}>={observed - 0.01}"],
                 compare="champion")
    assert ok.passed and ok.version == 1 and any("no @champion yet" in n for n in ok.notes)
    assert _aliases("esi-rt")["champion"] == 1
    tags = mlc.get_model_version("esi-rt", "1").tags
    assert tags["validation_status"] == "passed" and tags["validated_by"] and tags["validated_at"]
    assert f"observed {observed}" in tags[f"gate.{ZS}"]

    v2 = _worse_version(run, tmp_path, "esi-rt", delta=0.05)
    assert v2 == 2
    # A gate above the observed value.
    too_high = promote("esi-rt", version=2, require=[f"{ZS}>={observed + 0.5}"])
    assert not too_high.passed and too_high.failing[0]["observed"] == pytest.approx(observed - 0.05)
    # A metric the version does not have: a failure, never a pass.
    missing = promote("esi-rt", version=2, require=["ptbxl.rhythm.zero_shot.macro_auc>=0.1"])
    assert not missing.passed and "missing" in missing.failing[0]["reason"]
    # Every absolute gate holds, but the candidate is worse than the champion.
    worse = promote("esi-rt", version=2, require=[f"{ZS}>=0.0"], compare="champion")
    assert not worse.passed
    assert [g["metric"] for g in worse.failing] == [ZS] and worse.failing[0]["threshold"] == observed
    assert _aliases("esi-rt")["champion"] == 1  # the alias did not move
    tags = mlc.get_model_version("esi-rt", "2").tags
    assert tags["validation_status"] == "failed" and tags[f"gate.{ZS}"].startswith("failed")
    with pytest.raises(RegistryError, match="not METRIC OP NUMBER"):
        promote("esi-rt", version=2, require=["zero_shot macro_auc high"])
    from esi.errors import PromotionRefused

    with pytest.raises(PromotionRefused, match="esi-rt v2 NOT promoted"):
        worse.raise_if_refused()


def test_tampered_weights_are_refused(run, tmp_path: Path) -> None:
    import mlflow

    from esi.registry.load import logged_model_id
    from esi.registry.tracking import local_path

    run_dir, eval_dir, _ = run
    reg = register_run(run_dir, [eval_dir], "esi-tamper", reference_records=0)
    mlc = _client()
    root = local_path(mlc.get_logged_model(logged_model_id(mlc.get_model_version("esi-tamper", "1"))).artifact_location)
    weights = root / "artifacts" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=r"esi-tamper v1: weights artifact weights.pt has sha256 .* altered"):
        load_model(f"models:/esi-tamper/{reg.version}")
    with pytest.raises(RegistryError, match="altered"):
        mlflow.pyfunc.load_model("models:/esi-tamper/1")
    weights.write_bytes(b"not a torch file")
    with pytest.raises(RegistryError, match="esi-tamper v1"):
        load_model("models:/esi-tamper/1")


def test_store_gone_registers_without_reference(run, tmp_path: Path) -> None:
    from esi.models.checkpoint import load_model as load_checkpoint
    from esi.models.checkpoint import read_checkpoint, save_checkpoint

    run_dir, _, _ = run
    extra = read_checkpoint(run_dir / "model.pt")["extra"]
    extra["pretrain"]["config"]["store"] = str(tmp_path / "moved-away")
    save_checkpoint(tmp_path / "run" / "model.pt", load_checkpoint(run_dir / "model.pt"), **extra)
    reg = register_run(tmp_path / "run", [], "esi-nostore")
    assert reg.created and reg.reference_records == 0
    assert reg.warnings and "without reference embeddings" in reg.warnings[0]
    card = reg.card_path.read_text()
    assert "No reference embeddings for drift checks" in card and "not readable here" in card
    assert "No evaluation was attached" in card
    assert load_reference("models:/esi-nostore@candidate") is None


def test_evaluation_of_another_model_is_rejected(run, tmp_path: Path) -> None:
    run_dir, eval_dir, _ = run
    metrics = _eval_metrics(eval_dir)
    metrics["model"]["digest"] = "0" * 20
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RegistryError, match="digest 00000000000000000000"):
        register_run(run_dir, [tmp_path / "other"], "esi-mismatch")
    with pytest.raises(RegistryError, match="no metrics.json"):
        register_run(run_dir, [tmp_path], "esi-mismatch")
    with pytest.raises(RegistryError, match="does not exist in"):
        load_model("models:/esi-mismatch@champion")
    with pytest.raises(RegistryError, match="not a registered-model URI"):
        load_model("models:/esi-rt/Production")


def test_cli_register_promote_list_show_evaluate(run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from esi.cli import app

    run_dir, eval_dir, store = run
    cli = CliRunner()
    res = cli.invoke(app, ["register", "--run", str(run_dir), "--evaluation", str(eval_dir), "--name", "esi-cli",
                           "--reference", "16", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "registered: models:/esi-cli/1" in res.output and "16 reference embeddings" in res.output
    res = cli.invoke(app, ["promote", "--name", "esi-cli", "--require", f"{ZS}>=2"])
    assert res.exit_code == 1 and "FAIL" in res.output and ZS in res.output and "NOT promoted" in res.output
    res = cli.invoke(app, ["promote", "--name", "esi-cli", "--require", f"{ZS}>=0", "--compare", "champion"])
    assert res.exit_code == 0, res.output
    assert "promoted: models:/esi-cli@champion -> v1" in res.output
    res = cli.invoke(app, ["models", "list", "--name", "esi-cli", "--json"])
    rows = json.loads(res.output)
    assert rows[0]["aliases"] == ["candidate", "champion"] and rows[0]["validation_status"] == "passed"
    res = cli.invoke(app, ["models", "list"])
    assert res.exit_code == 0 and "esi-cli" in res.output
    res = cli.invoke(app, ["models", "show", "esi-cli@champion"])
    assert res.exit_code == 0 and "# Model card: esi-cli" in res.output and "| zero_shot | macro_auc |" in res.output
    res = cli.invoke(app, ["promote", "--name", "esi-cli", "--version", "7"])
    assert res.exit_code == 2 and "does not exist" in res.output
    # esi evaluate reads the registered champion.
    res = cli.invoke(app, ["evaluate", "--model", "models:/esi-cli@champion", "--benchmark", "synthetic", "--root",
                           str(store), "--modes", "zero-shot", "--bootstrap", "0", "--no-mlflow", "--quiet",
                           "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["model"]["kind"] == "registry"
