"""``esi score``: schema, resume after SIGKILL, rejects, shards, plan checks, drift."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from esi.data.store import open_store
from esi.errors import ConfigError
from esi.serving.score import score

LABELS = ["164889003", "426783006", "59118001"]
COLUMNS = ["record_id", "source", "path", "model_name", "model_version", "embedding",
           *[f"score_{c}" for c in LABELS], "top_conditions", "top_names"]


def _read(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "scores").sort_values("record_id").reset_index(drop=True)


def test_schema_values_and_resume(tiny_store: Path, tiny_checkpoint: Path, label_file: Path, engine,
                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    s = score(tiny_store, out, model=str(tiny_checkpoint), labels=str(label_file), batch_size=8, part_size=10,
              top_k=2, progress=False)
    assert (s.records, s.rejects, s.parts_total, s.parts_written, s.complete) == (24, 0, 3, 3, True)
    table = pq.read_table(out / "scores")
    assert table.column_names == COLUMNS
    emb_type = table.schema.field("embedding").type
    assert pa.types.is_list(emb_type) and emb_type.value_type == pa.float32()
    assert table.schema.field("score_164889003").type == pa.float32()
    assert table.schema.field("top_conditions").type == pa.list_(pa.string())
    df = _read(out)
    assert df["record_id"].tolist() == [f"rec{i:03d}" for i in range(24)]
    assert set(df["model_version"]) == {engine.info["version"]} and s.model_version == engine.info["version"]
    store = open_store(tiny_store)
    want = engine.embed_windows(store.signals(range(24)))
    np.testing.assert_allclose(np.stack(df["embedding"]), want, rtol=1e-5, atol=1e-6)
    sc = df[[f"score_{c}" for c in LABELS]].to_numpy()
    best = [LABELS[j] for j in sc.argmax(1)]
    assert [t[0] for t in df["top_conditions"]] == best and all(len(t) == 2 for t in df["top_names"])
    assert s.drift["available"] is False and "no reference" in s.drift["reason"]
    again = score(tiny_store, out, model=str(tiny_checkpoint), labels=str(label_file), batch_size=8, part_size=10,
                  top_k=2, progress=False)
    assert (again.parts_skipped, again.parts_written, again.records_this_run, again.records) == (3, 0, 0, 24)
    pd.testing.assert_frame_equal(_read(out), df)


def test_corrupt_record_is_rejected_and_neighbours_scored(wfdb_dir: Path, tiny_checkpoint: Path,
                                                          label_file: Path, tmp_path: Path) -> None:
    dat = wfdb_dir / "00666_hr.dat"
    dat.write_bytes(dat.read_bytes()[:5000])  # truncated
    out = tmp_path / "out"
    s = score(wfdb_dir, out, model=str(tiny_checkpoint), labels=str(label_file), part_size=2, progress=False)
    assert (s.records, s.rejects) == (4, 1)
    rejects = pd.read_parquet(out / "rejects.parquet")
    assert rejects["record_id"].tolist() == ["wfdb/00666_hr"] and "truncated" in rejects["reason"].iat[0]
    assert sorted(_read(out)["record_id"]) == ["wfdb/00005_hr", "wfdb/00841_hr", "wfdb/A0001", "wfdb/A0002"]
    assert any("truncated" in k for k in s.reject_reasons)


def test_shards_together_equal_one_run(tiny_store: Path, tiny_checkpoint: Path, label_file: Path,
                                       tmp_path: Path) -> None:
    kw = {"model": str(tiny_checkpoint), "labels": str(label_file), "part_size": 5, "progress": False}
    first = score(tiny_store, tmp_path / "sharded", shard=(1, 2), **kw)
    assert not first.complete and first.parts_done == 3  # parts 0, 2, 4 of 5
    second = score(tiny_store, tmp_path / "sharded", shard=(2, 2), **kw)
    assert second.complete and second.records == 24
    whole = score(tiny_store, tmp_path / "whole", **kw)
    pd.testing.assert_frame_equal(_read(tmp_path / "sharded"), _read(tmp_path / "whole"))
    assert whole.records == 24


def test_sigkill_half_way_then_rerun_scores_each_record_once(tiny_store: Path, tiny_checkpoint: Path,
                                                             label_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "esi.cli", "score", "--input", str(tiny_store), "--out", str(out), "--model",
           str(tiny_checkpoint), "--labels", str(label_file), "--part-size", "1", "--batch-size", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "scores").glob("part-*.parquet"))) >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "esi score ended before it could be killed half-way"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done_before = len(list((out / "scores").glob("part-*.parquet")))
    assert 4 <= done_before < 24
    s = score(tiny_store, out, model=str(tiny_checkpoint), labels=str(label_file), part_size=1, batch_size=1,
              progress=False)
    assert s.parts_skipped == done_before and s.parts_written == 24 - done_before and s.complete
    ids = _read(out)["record_id"]
    assert len(ids) == 24 and ids.is_unique and sorted(ids) == [f"rec{i:03d}" for i in range(24)]
    assert not list(out.rglob(".part-*"))  # no temporary file left looking like a part


def test_another_plan_or_a_foreign_folder_is_refused(tiny_store: Path, tiny_checkpoint: Path, label_file: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    score(tiny_store, out, model=str(tiny_checkpoint), labels=str(label_file), part_size=12, progress=False)
    with pytest.raises(ConfigError, match="part_size differ"):
        score(tiny_store, out, model=str(tiny_checkpoint), labels=str(label_file), part_size=6, progress=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an 'esi score' output"):
        score(tiny_store, foreign, model=str(tiny_checkpoint), labels=str(label_file), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="1 <= i <= n"):
        score(tiny_store, tmp_path / "x", model=str(tiny_checkpoint), shard=(3, 2))


def test_drift_against_a_reference(tiny_store: Path, tiny_checkpoint: Path, label_file: Path, engine,
                                   tmp_path: Path) -> None:
    ref = engine.embed_windows(open_store(tiny_store).signals(range(24)))
    s = score(tiny_store, tmp_path / "out", model=str(tiny_checkpoint), labels=str(label_file), progress=False,
              reference=ref)
    assert s.drift["available"] and s.drift["far_share"] == 0.0 and s.drift["p_value"] > 0.5
    far = score(tiny_store, tmp_path / "out2", model=str(tiny_checkpoint), labels=str(label_file), progress=False,
                reference=-ref)  # the antipodes: every record is far from every reference neighbour
    assert far.drift["far_share"] == 1.0 and far.drift["p_value"] < 0.05


def test_a_source_root_is_read_like_esi_data_prepare(real_dir: Path, tiny_checkpoint: Path, label_file: Path,
                                                      tmp_path: Path) -> None:
    """PTB-XL in its own layout (ptbxl_database.csv + records500/100): every row is scored at the model's rate."""
    from esi.data.readers import get_reader

    refs = get_reader("ptbxl").list_refs(real_dir / "ptbxl")
    s = score(real_dir / "ptbxl", tmp_path / "out", source="ptbxl", model=str(tiny_checkpoint),
              labels=str(label_file), progress=False)
    assert s.input_kind == "ptbxl" and s.records + s.rejects == len(refs) and s.records >= 10
    df = _read(tmp_path / "out")
    assert set(df["record_id"]) <= {r.record_id for r in refs} and df["record_id"].is_unique
    assert np.isfinite(np.stack(df["embedding"])).all()


def test_quarantined_store_records_become_rejects(tiny_store: Path, tiny_checkpoint: Path, label_file: Path,
                                                  tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    pd.DataFrame({"record_id": ["rec003", "rec017"], "failed": ["flatline", "amplitude"]}).to_parquet(
        store / "quarantine.parquet")
    s = score(store, tmp_path / "out", model=str(tiny_checkpoint), labels=str(label_file), part_size=8,
              progress=False)
    assert (s.records, s.rejects) == (22, 2)
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert sorted(rejects["record_id"]) == ["rec003", "rec017"]
    assert rejects["reason"].str.contains("quarantined").all()
    assert not {"rec003", "rec017"} & set(_read(tmp_path / "out")["record_id"])


def test_records_are_made_part_by_part(tiny_store: Path, wfdb_dir: Path) -> None:
    """No object per record of the whole archive up front: items are made for the slice asked for."""
    from esi.serving.sources import LazyItems, open_input

    inp = open_input(tiny_store)
    assert isinstance(inp.items, LazyItems) and len(inp.items) == 24
    part = inp.items[10:20]
    m = open_store(tiny_store).manifest
    assert [it.record_id for it in part] == m["record_id"].iloc[10:20].tolist()
    assert [it.key for it in part] == list(range(10, 20)) and inp.items[-1].record_id == "rec023"
    assert inp.items[20:100] == inp.items[20:24] and len(inp.items[30:]) == 0
    with pytest.raises(IndexError, match="out of range 0..23"):
        inp.items[24]
    wfdb = open_input(wfdb_dir)
    assert sorted(it.record_id.rsplit("/", 1)[-1] for it in wfdb.items[:]) == ["00005_hr", "00666_hr", "00841_hr",
                                                                         "A0001", "A0002"]
