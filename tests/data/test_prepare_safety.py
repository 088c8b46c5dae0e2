"""`esi data prepare` never destroys what is not ours, keeps one writer per store, resumes after kill -9,
and every damaged store file is a StoreError (exit 2, no traceback) that names the file and the fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from esi.cli import app
from esi.data.lock import exclusive_lock, lock_path
from esi.data.prepare import prepare
from esi.data.store import EcgStore, is_esi_store
from esi.errors import ConfigError, DataError, LockedError, StoreError


def _cli(*args: str):
    return CliRunner().invoke(app, [*args])


@pytest.fixture(scope="module")
def store(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "ptbxl"
    assert prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=5).complete
    return out


# --- never destroy what is not ours ---------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_non_store_folder_is_refused_with_or_without_overwrite(real_dir: Path, tmp_path: Path,
                                                               overwrite: bool) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    res = _cli("data", "prepare", "--source", "ptbxl", "--root", str(real_dir / "ptbxl"), "--out", str(out),
               "--quiet", *(["--overwrite"] if overwrite else []))
    assert res.exit_code == 2 and "not an ESI store" in res.output
    assert (out / "chapter1.tex").read_text() == "years of work" and sorted(os.listdir(out)) == ["chapter1.tex"]


def test_overwrite_deletes_an_esi_store_only(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    prepare("ptbxl", real_dir / "ptbxl", out, progress=False, limit=2)
    assert is_esi_store(out)
    s = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, limit=3, overwrite=True)
    assert s.complete and len(EcgStore(out)) == 3
    # an empty folder is fine to write into; a file is not
    (tmp_path / "empty").mkdir()
    assert prepare("ptbxl", real_dir / "ptbxl", tmp_path / "empty", progress=False, limit=1).complete
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        prepare("ptbxl", real_dir / "ptbxl", tmp_path / "afile", progress=False, limit=1)


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_out_and_root_must_not_overlap(real_dir: Path, tmp_path: Path, where: str) -> None:
    import shutil

    root = tmp_path / "data" / "ptbxl"
    shutil.copytree(real_dir / "ptbxl", root)
    out = {"same": root, "inside": root / "store", "contains": tmp_path / "data"}[where]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for overwrite in (False, True):
        res = _cli("data", "prepare", "--source", "ptbxl", "--root", str(root), "--out", str(out), "--quiet",
                   *(["--overwrite"] if overwrite else []))
        assert res.exit_code == 2 and "--root" in res.output and "--out" in res.output, res.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_empty_root_is_an_error_for_every_source(tmp_path: Path) -> None:
    from esi.data.readers import SOURCES

    for source in SOURCES:
        root = tmp_path / source
        root.mkdir()
        if source == "ptbxl":
            (root / "ptbxl_database.csv").write_text("ecg_id,patient_id,scp_codes,strat_fold,filename_lr,"
                                                     "filename_hr\n")
        elif source == "mimic":
            (root / "record_list.csv").write_text("subject_id,study_id,path\n")
            (root / "machine_measurements.csv").write_text("study_id\n")
        elif source == "icbeb":
            (root / "REFERENCE.csv").write_text("Recording,First_label\n")
        res = _cli("data", "prepare", "--source", source, "--root", str(root), "--out",
                   str(tmp_path / f"out-{source}"), "--quiet")
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and f"no records found under {root} for source {source}; expected" in text, text
        assert "Traceback" not in res.output


# --- one writer per store -------------------------------------------------------------------------------------
def test_second_writer_is_refused_with_who_holds_it(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    with exclusive_lock(out, "esi data prepare"):
        res = _cli("data", "prepare", "--source", "ptbxl", "--root", str(real_dir / "ptbxl"), "--out", str(out),
                   "--quiet")
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and f"locked by PID {os.getpid()}" in text and "since" in text, text
        assert "(esi data prepare)" in text
    # released: the same command now runs
    assert prepare("ptbxl", real_dir / "ptbxl", out, progress=False, limit=1).complete


def test_lock_from_another_process_waits_then_fails(tmp_path: Path) -> None:
    out = tmp_path / "o"
    code = ("import sys, time; from esi.data.lock import exclusive_lock\n"
            f"with exclusive_lock({str(out)!r}, 'esi caption'):\n    print('held', flush=True); time.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(LockedError, match=rf"locked by PID {child.pid} on .* \(esi caption\) since"):
            with exclusive_lock(out, "esi score", timeout=0.6):
                pass
        assert time.monotonic() - t0 >= 0.5  # it waited for the timeout
        child.kill()  # kill -9 leaves the file behind; the kernel drops the flock, the PID is dead: stale
        child.wait()
        with exclusive_lock(out, "esi score"):
            assert json.loads(lock_path(out).read_text())["what"] == "esi score"
    finally:
        child.kill()
    assert lock_path(out).read_text() == ""  # released: an empty lock file is a free one


def test_stale_lock_of_a_dead_pid_is_taken_over_with_a_warning(tmp_path: Path, caplog) -> None:
    out = tmp_path / "o"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    import socket

    lock_path(out).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname(), "what": "esi data "
                                          "prepare", "since": "2026-01-01T00:00:00"}))
    with caplog.at_level("WARNING"), exclusive_lock(out, "esi data prepare"):
        pass
    assert "stale lock" in caplog.text and f"PID {dead}" in caplog.text
    # a lock recorded by a live process on another host cannot be checked here: it is held
    lock_path(out).write_text(json.dumps({"pid": 1, "host": "other-host", "what": "esi score", "since": "x"}))
    with pytest.raises(LockedError, match="PID 1 on other-host"):
        with exclusive_lock(out, "esi data prepare"):
            pass


def test_shard_tasks_share_the_store_but_not_a_shard(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    with exclusive_lock(out, "esi data prepare --shard 0/2", shared=True, key="shard-0-of-2"):
        # another shard task runs beside it
        s = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3, shard=(1, 2))
        assert not s.complete
        # a whole-store run does not
        with pytest.raises(LockedError, match=r"--shard 0/2"):
            prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3)
    with exclusive_lock(out.parent / f"{out.name}.shard-0-of-2", "esi data prepare --shard 0/2"):
        with pytest.raises(LockedError):
            prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3, shard=(0, 2))
    assert prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3, shard=(0, 2)).complete


# --- kill -9, resume ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from esi.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth") / "ptbxl"
    generate_dataset(root, subjects=40, records_per_subject=3, seed=3, progress=False)
    return root


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_9_then_resume_gives_every_record_exactly_once(synth_root: Path, tmp_path: Path, caplog,
                                                            workers: int) -> None:
    if workers and not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to find the worker processes")
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "esi.cli", "data", "prepare", "--source", "ptbxl", "--root", str(synth_root),
           "--out", str(out), "--shard-size", "2", "--workers", str(workers), "--quiet"]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "shards" / "shard-00003").is_dir():
        assert child.poll() is None and time.monotonic() < deadline, "prepare ended before it could be killed"
        time.sleep(0.005)
    pool = _children(child.pid)
    assert len(pool) >= workers
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # the workers die with it (they write parts, and hold none of its locks): nothing writes after a kill
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pool):
        assert time.monotonic() < deadline, "worker processes outlived the killed prepare"
        time.sleep(0.05)
    done_before = len(list((out / "shards").glob("shard-*")))
    assert 0 < done_before < 60, "killed mid-way"
    with pytest.raises(StoreError, match="incomplete"):
        EcgStore(out)
    with caplog.at_level("WARNING"):
        s = prepare("ptbxl", synth_root, out, progress=False, shard_size=2, resume=True)
    assert "stale lock" in caplog.text  # the killed run's lock file, taken over
    assert s.complete and s.shards_skipped == done_before
    ids = EcgStore(out).manifest["record_id"].tolist()
    assert len(ids) == len(set(ids)) == 120
    assert not list((out / "shards").glob(".tmp-*")), "the killed run's temporary shards are cleaned up"


def test_a_forked_worker_holds_none_of_the_parent_locks(tmp_path: Path) -> None:
    """A worker forked inside the lock would keep it (flock belongs to the open file, which fork shares) after
    its parent is killed; close_inherited_locks drops the child's copy, so the lock dies with its owner."""
    out = tmp_path / "s"
    script = (
        "import multiprocessing as mp, os, sys, time\n"
        "from esi.data.lock import close_inherited_locks, exclusive_lock\n"
        "def child(close):\n"
        "    if close: close_inherited_locks()\n"
        "    print(os.getpid(), flush=True)  # once its descriptors are as they will stay\n"
        "    time.sleep(60)\n"
        "with exclusive_lock(sys.argv[1], 'test'):\n"
        "    mp.get_context('fork').Process(target=child, args=(sys.argv[2] == '1',)).start()\n"
        "    time.sleep(60)\n")
    for close in (True, False):
        proc = subprocess.Popen([sys.executable, "-c", script, str(out), "1" if close else "0"],
                                stdout=subprocess.PIPE, text=True)
        worker = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            if close:
                with exclusive_lock(out, "esi data prepare"):
                    pass
            else:  # without it the orphan still holds the lock: what the test guards against
                with pytest.raises(LockedError):
                    with exclusive_lock(out, "esi data prepare"):
                        pass
        finally:
            os.kill(worker, signal.SIGKILL)
        time.sleep(0.1)


# --- store errors ---------------------------------------------------------------------------------------------
def _damaged(store: Path, tmp_path: Path, damage: str) -> Path:
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(store, copy)
    if damage == "plan":
        (copy / "plan.json").write_text("{not json")
    elif damage == "header":
        (copy / "header.json").write_text('{"schema_version": 1, "comp')
    elif damage == "manifest":
        data = (copy / "manifest.parquet").read_bytes()
        (copy / "manifest.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "shard":
        (copy / "shards" / "shard-00001" / "signals.npy").unlink()
    elif damage == "shard_garbage":
        (copy / "shards" / "shard-00001" / "signals.npy").write_bytes(b"\x93NUMPY garbage")
    elif damage == "schema":
        header = json.loads((copy / "header.json").read_text())
        header["schema_version"] = 99
        (copy / "header.json").write_text(json.dumps(header))
    return copy


DAMAGES = {"plan": "plan.json", "header": "header.json", "manifest": "manifest.parquet",
           "shard": "signals.npy", "shard_garbage": "signals.npy", "schema": "schema version 99"}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_store_is_a_store_error_in_every_command(store: Path, tmp_path: Path, damage: str) -> None:
    bad = _damaged(store, tmp_path, damage)
    with pytest.raises(StoreError, match=DAMAGES[damage]):
        s = EcgStore(bad)
        s.manifest  # noqa: B018 - the readers must raise too
        s.signals(range(len(s)))
    for args in (["data", "info", str(bad)], ["validate", str(bad), "--report", str(tmp_path / "r"), "--quiet"],
                 ["caption", str(bad), "--out", str(tmp_path / "c.parquet"), "--plain", "--quiet"],
                 ["pretrain", "--config", "esi_test", "--store", str(bad), "--captions", str(tmp_path / "c"),
                  "--out", str(tmp_path / "run"), "--no-mlflow", "--quiet"],
                 ["evaluate", "--model", "esi_test", "--root", str(bad), "--modes", "zero-shot", "--no-mlflow",
                  "--quiet", "--out", str(tmp_path / "ev")]):
        res = _cli(*args)
        text = " ".join(res.output.split())
        assert res.exit_code == 2, (args, res.output, res.exception)
        assert "Traceback" not in res.output and "error:" in text.lower() and DAMAGES[damage] in text, (args, text)
        assert "esi data prepare" in text and ("--resume" in text or "--overwrite" in text), (args, text)


def test_resume_repairs_a_missing_shard_and_a_truncated_manifest(store: Path, real_dir: Path,
                                                                 tmp_path: Path) -> None:
    bad = _damaged(store, tmp_path, "shard")
    data = (bad / "manifest.parquet").read_bytes()
    (bad / "manifest.parquet").write_bytes(data[:100])
    s = prepare("ptbxl", real_dir / "ptbxl", bad, progress=False, shard_size=5, resume=True)
    assert s.complete and s.shards_done_now == 1
    fixed, ref = EcgStore(bad), EcgStore(store)
    assert fixed.manifest["record_id"].tolist() == ref.manifest["record_id"].tolist()
    np.testing.assert_array_equal(fixed.signals(range(len(fixed))), ref.signals(range(len(ref))))
    with pytest.raises(StoreError, match="nothing|no store to resume"):
        prepare("ptbxl", real_dir / "ptbxl", tmp_path / "new", progress=False, resume=True)


def test_store_files_share_one_mode(store: Path) -> None:
    modes = {p.relative_to(store).as_posix(): oct(p.stat().st_mode & 0o777) for p in store.rglob("*")
             if p.is_file()}
    assert len(set(modes.values())) == 1, modes


def test_empty_store_is_refused_by_caption_and_validate(tmp_path: Path) -> None:
    from esi.data.store import write_store

    empty = write_store(tmp_path / "empty", [])
    for args in (["caption", str(empty), "--out", str(tmp_path / "c.parquet"), "--plain", "--quiet"],
                 ["validate", str(empty), "--report", str(tmp_path / "r"), "--quiet"]):
        res = _cli(*args)
        assert res.exit_code == 2 and "is empty: 0 records" in " ".join(res.output.split()), res.output
    with pytest.raises(DataError, match="no records found"):
        prepare("wfdb", tmp_path / "empty", tmp_path / "out", progress=False)


def test_caption_output_has_one_writer(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "captions.parquet"
    with exclusive_lock(out, "esi caption"):
        res = _cli("caption", str(store), "--out", str(out), "--plain", "--quiet")
        assert res.exit_code == 2 and "locked by PID" in " ".join(res.output.split()), res.output
        assert not out.exists()
    res = _cli("caption", str(store), "--out", str(out), "--plain", "--quiet")
    assert res.exit_code == 0 and out.exists(), res.output


def test_without_flock_support_the_recorded_owner_still_guards(tmp_path: Path, monkeypatch) -> None:
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    out = tmp_path / "o"
    with exclusive_lock(out, "esi data prepare"):
        with pytest.raises(LockedError, match=f"PID {os.getpid()}"):
            with exclusive_lock(out, "esi caption"):
                pass
    with exclusive_lock(out, "esi caption"):  # released: the record was cleared
        pass
