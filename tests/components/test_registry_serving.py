"""register, promote, build_bento and score_shard call the registry/serving contracts with the right arguments.

The contract functions are replaced by recorders returning contract-shaped results (the real ones run in the
end-to-end kfp.local test). Catches: the wrong run or evaluation folder registered, gates not passed through, a
refused promotion that still claims the champion, a bento built from another URI, shards writing one folder.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kfp.dsl import Artifact, Dataset, Model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.bento.component import build_bento  # noqa: E402
from components.promote.component import promote  # noqa: E402
from components.register.component import register  # noqa: E402
from components.score.component import score_merge, score_plan, score_shard  # noqa: E402


@dataclass
class Registration:
    name: str
    version: int
    model_uri: str
    digest: str
    created: bool
    card_path: Path


@dataclass
class Promotion:
    name: str
    version: int
    to: str
    passed: bool
    gates: list[dict] = field(default_factory=list)


@dataclass
class ScoreSummary:
    records: int
    rejected: int
    seconds: float
    out: str


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, tuple, dict]]:
    log: list[tuple[str, tuple, dict]] = []
    import esi.registry

    def register_run(*a, **kw):
        log.append(("register_run", a, kw))
        return Registration(kw.get("name", "esi"), 3, "models:/esi/3", "abc", True, tmp_path / "card.md")

    def promote_(*a, **kw):
        log.append(("promote", a, kw))
        ok = kw.get("require") != ["x>=1"]
        gates = [{"metric": "x", "op": ">=", "threshold": 1.0, "observed": 0.2, "passed": ok, "reason": ""}]
        return Promotion(a[0], kw["version"], kw["to"], ok, gates)

    def build(uri, *, tracking_uri=None):
        log.append(("build_bento", (uri,), {"tracking_uri": tracking_uri}))
        return "esi:3"

    def score(records, out, **kw):
        log.append(("score", (records, out), kw))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "summary.json").write_text(json.dumps({"records": 2, "rejects": 1, "seconds": 0.5}))
        return ScoreSummary(2, 1, 0.5, str(out))

    monkeypatch.setattr(esi.registry, "register_run", register_run, raising=False)
    monkeypatch.setattr(esi.registry, "promote", promote_, raising=False)
    build_mod = types.ModuleType("esi.serving.build")
    build_mod.build_bento = build
    score_mod = types.ModuleType("esi.serving.score")
    score_mod.score = score
    monkeypatch.setitem(sys.modules, "esi.serving.build", build_mod)
    monkeypatch.setitem(sys.modules, "esi.serving.score", score_mod)
    return log


def test_register_passes_the_run_and_its_evaluation(calls, tmp_path: Path) -> None:
    model = Model(uri=str(tmp_path / "m"), metadata={"run_dir": "/w/pretrain", "checkpoint": "/w/pretrain/model.pt"})
    ev = Artifact(uri=str(tmp_path / "e"), metadata={"path": "/w/evaluation"})
    out = Model(uri=str(tmp_path / "r"), metadata={})
    version, uri = register.python_func(work_root=str(tmp_path), model=model, evaluation=ev, registered=out,
                                        model_name="ecg")
    name, args, kw = calls[0]
    assert args == ("/w/pretrain",) and kw["evaluations"] == ["/w/evaluation"] and kw["name"] == "ecg"
    assert (version, uri) == (3, "models:/esi/3") and out.metadata["digest"] == "abc"
    assert Path(out.path).read_text().strip() == "models:/esi/3"
    # The real-ECG benchmark's evaluation is registered with it; a skipped one (no folder) is left out.
    real = Artifact(uri=str(tmp_path / "er"), metadata={"path": "/w/evaluation_real"})
    register.python_func(work_root=str(tmp_path), model=model, evaluation=ev, evaluation_real=real, registered=out)
    assert calls[-1][2]["evaluations"] == ["/w/evaluation", "/w/evaluation_real"]
    assert out.metadata["evaluations"] == ["/w/evaluation", "/w/evaluation_real"]
    skipped = Artifact(uri=str(tmp_path / "es"), metadata={"path": "", "skipped": "real_benchmark=False"})
    register.python_func(work_root=str(tmp_path), model=model, evaluation=ev, evaluation_real=skipped,
                         registered=out)
    assert calls[-1][2]["evaluations"] == ["/w/evaluation"]


def test_promote_gates_and_refusal(calls, tmp_path: Path) -> None:
    decision = Artifact(uri=str(tmp_path / "d"), metadata={})
    passed, uri = promote.python_func(work_root=str(tmp_path), version=3, decision=decision,
                                      gates="a>=0.5, b<=2")
    assert calls[-1][2]["require"] == ["a>=0.5", "b<=2"] and calls[-1][2]["version"] == 3
    assert (passed, uri) == (True, "models:/esi@champion")
    passed, uri = promote.python_func(work_root=str(tmp_path), version=3, decision=decision, gates="x>=1")
    assert (passed, uri) == (False, "models:/esi/3")  # refused: serve/score that version, champion untouched
    assert decision.metadata["failing"] == ["x"]
    assert json.loads(Path(decision.path).read_text())["gates"][0]["observed"] == 0.2
    promote.python_func(work_root=str(tmp_path), version=3, decision=decision, gates="")
    assert calls[-1][2]["require"] is None  # '' = the settings' gates


def test_bento_and_sharded_scoring(calls, tmp_path: Path) -> None:
    bento = Artifact(uri=str(tmp_path / "b"), metadata={})
    assert build_bento.python_func(work_root=str(tmp_path), model_uri="models:/esi/3", bento=bento) == "esi:3"
    assert calls[-1][1] == ("models:/esi/3",) and bento.metadata["serve"] == "bentoml serve esi:latest"
    assert score_plan.python_func(shards=2) == [1, 2]
    folders = []
    for i in (1, 2):
        s = Dataset(uri=str(tmp_path / f"s{i}"), metadata={})
        folders.append(score_shard.python_func(work_root=str(tmp_path), shard=i, n_shards=2, scores=s,
                                               records=str(REPO / "tests" / "fixtures" / "real"),
                                               model_uri="models:/esi@champion", run_id="r1"))
        assert calls[-1][2]["shard"] == (i, 2) and calls[-1][2]["model"] == "models:/esi@champion"
    assert folders == [str(tmp_path / "scores" / "r1" / f"shard-{i}-of-2") for i in (1, 2)]
    summary = Dataset(uri=str(tmp_path / "sum"), metadata={})
    score_merge.python_func(work_root=str(tmp_path), shard_outputs=folders, summary=summary, run_id="r1")
    assert summary.metadata["records"] == 4 and summary.metadata["rejects"] == 2
