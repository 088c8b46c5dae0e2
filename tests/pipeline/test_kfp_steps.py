"""The glue the components call (esi/pipeline/kfp_steps.py): planning, paths, metrics, reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from esi.errors import ConfigError
from esi.pipeline import kfp_steps as ks


def test_init_step_sets_the_environment_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = ("MLFLOW_TRACKING_URI", "ESI_LLM", "OPENAI_BASE_URL")
    before = {var: os.environ.get(var) for var in written}
    monkeypatch.setenv("ESI_HOME", str(tmp_path / "home"))
    uri = f"sqlite:///{tmp_path / 'never-created.db'}"
    try:
        p = ks.init_step(tmp_path / "run", mlflow_tracking_uri=uri, llm="openai",
                         llm_base_url="http://127.0.0.1:9/v1")
        from esi.settings import get_settings

        s = get_settings()
        assert (s.llm, s.openai_base_url, s.tracking_uri) == ("openai", "http://127.0.0.1:9/v1", uri)
        assert p["prepare"] == tmp_path / "run" / "store" and p["score"] == tmp_path / "run" / "scores"
        assert os.environ["ESI_HOME"] == str(tmp_path / "home")  # an explicit ESI_HOME wins over WORK_ROOT/home
    finally:
        # init_step writes the process environment (its job in a pipeline step); leave none of it to later tests.
        # (monkeypatch.delenv cannot: it records nothing for a variable that was absent.)
        for var, value in before.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    with pytest.raises(ConfigError, match="work_root is empty"):
        ks.init_step("")


def test_plan_generates_and_splits_into_shards(tmp_path: Path) -> None:
    plan = ks.plan_prepare("synthetic", "", tmp_path, shard_size=3, subjects=4, records_per_subject=2, progress=False)
    assert plan["records"] == 8 and plan["reader"] == "ptbxl"
    assert plan["shards"] == ["0/3", "1/3", "2/3"]
    assert [ks.parse_shard(s) for s in plan["shards"]] == [(0, 3), (1, 3), (2, 3)]
    with pytest.raises(ConfigError, match="source_root"):
        ks.plan_prepare("wfdb", "", tmp_path, shard_size=3)
    with pytest.raises(ConfigError, match="0 <= i < n"):
        ks.parse_shard("3/3")


def test_scoring_shards_and_merge(tmp_path: Path) -> None:
    assert ks.score_shards(3) == [1, 2, 3]
    with pytest.raises(ConfigError):
        ks.score_shards(0)
    folders = []
    for i, n in ((1, 2), (2, 2)):
        d = ks.shard_out(tmp_path, i, n, "run-7")
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"records": 3 * i, "rejects": i - 1, "model": "models:/esi/1",
                                                    "seconds": 10.0 * i, "parts_total": 2, "records_this_run": 3 * i,
                                                    "batch_size": 64}))
        folders.append(str(d))
    total = ks.merge_scores(folders, tmp_path / "run-7")
    assert (total["records"], total["rejects"], total["parts_total"]) == (9, 1, 2) and len(total["shards"]) == 2
    assert total["seconds"] == 20.0 and total["records_per_s"] == 0.45  # parallel shards: the slowest one
    assert "batch_size" not in total and total["model"] == "models:/esi/1"
    assert json.loads((tmp_path / "run-7" / "summary-all.json").read_text())["records"] == 9


def test_metrics_gates_and_sample_records() -> None:
    assert ks.scalar_metrics({"a": 0.5, "n": 3, "flag": True, "nan": float("nan"), "s": "x"}) == {"a": 0.5, "n": 3.0}
    assert ks.parse_gates("") is None
    assert ks.parse_gates("a>=0.5, b<=2") == ["a>=0.5", "b<=2"]
    assert (ks.score_input("") / "ptbxl").is_dir()
    with pytest.raises(ConfigError, match="does not exist"):
        ks.score_input("/nonexistent/records")


def test_markdown_report_becomes_self_contained_html(tmp_path: Path) -> None:
    (tmp_path / "roc.png").write_bytes(b"\x89PNG fake")
    md = "# Report\n\n| mode | AUROC |\n| --- | --- |\n| zero-shot | **0.81** |\n\n- note `x<y`\n\n![roc](roc.png)\n"
    html = ks.markdown_to_html(md, title="t", base=tmp_path)
    assert "<h1>Report</h1>" in html and "<td><b>0.81</b></td>" in html and "<th>AUROC</th>" in html
    assert "<code>x&lt;y</code>" in html and "data:image/png;base64," in html
    assert "---" not in html


def test_real_benchmark_paths_mix_and_evaluations(tmp_path: Path) -> None:
    assert ks.captions_out(tmp_path) == tmp_path / "captions.parquet"
    assert ks.captions_out(tmp_path, "real") == tmp_path / "real_captions.parquet"
    with pytest.raises(ConfigError, match="known: main, real"):
        ks.captions_out(tmp_path, "other")
    store, caps = {"path": "/w/real_store"}, {"path": "/w/real_captions.parquet"}
    assert ks.real_mix(store, caps) == [{"store": "/w/real_store", "captions": "/w/real_captions.parquet"}]
    assert ks.real_mix(store, caps, enabled=False) == []  # mix_real=False
    assert ks.real_mix({"path": "", "skipped": "real_benchmark=False"}, {"path": ""}) == []
    assert ks.real_mix(None, None) == []  # a pipeline that wires no real store
    assert ks.evaluation_folders({"path": "/w/evaluation"}, {"path": "", "skipped": "x"}, None) == ["/w/evaluation"]
    assert ks.evaluation_folders({"path": "/w/e"}, {"path": "/w/r"}) == ["/w/e", "/w/r"]
    skipped = ks.prepare_real_store(tmp_path, enabled=False)
    assert skipped == {"path": "", "records": 0, "skipped": "real_benchmark=False"}
    assert not (tmp_path / "real_store").exists()


class _Art:
    """The part of a KFP artifact an evaluate step writes: path, metadata, log_metric."""

    def __init__(self, path: Path) -> None:
        self.path, self.metadata = str(path), {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value


def test_evaluation_is_published_on_the_artifacts(tmp_path: Path) -> None:
    from types import SimpleNamespace

    out = tmp_path / "evaluation_real"
    out.mkdir()
    (out / "report.md").write_text("# Real-ECG benchmark\n\n| mode | AUC |\n|---|---|\n| zero_shot | 0.71 |\n")
    flat = {"zero_shot_macro_auc": 0.71, "zero_shot_macro_auc_ci_low": 0.6, "bad": float("nan")}
    result = SimpleNamespace(out=out, headline=lambda: flat, mlflow_run_id=None)
    arts = [_Art(tmp_path / "a" / n) for n in ("metrics", "md", "html", "evaluation")]
    got = ks.publish_evaluation(result, *arts, title="real")
    assert got == arts[0].metadata == {"zero_shot_macro_auc": 0.71, "zero_shot_macro_auc_ci_low": 0.6}
    assert Path(arts[1].path).read_text().startswith("# Real-ECG") and "<td>0.71</td>" in Path(arts[2].path).read_text()
    assert json.loads(Path(arts[3].path).read_text())["path"] == str(out) == arts[3].metadata["path"]
    ks.publish_skipped(*arts[1:], title="Real-ECG benchmark", reason="skipped: real_benchmark=False")
    assert "not run" in Path(arts[1].path).read_text() and arts[3].metadata["path"] == ""
    assert ks.evaluation_folders(arts[3].metadata) == []


def test_local_summary_names_tasks_by_their_display_name() -> None:
    from esi.pipeline.kfp_local import display_names, load_pipeline

    names = display_names(load_pipeline("esi_full"))
    assert names["caption-2"] == "caption-real"  # the caption component's second use: the real benchmark store
    assert "evaluate-real" not in names and "prepare-real" not in names  # used once: the task name is the name
