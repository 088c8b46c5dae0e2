"""The service for real: a bento built from a registered tiny model, ``bentoml serve`` on 127.0.0.1, every
endpoint through ``bentoml.SyncHTTPClient`` and plain JSON, every bad-input class answered 4xx while the
server keeps answering, and ``esi score`` through the server equal to in-process scoring."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from serving_helpers import ecg_batch, free_port

pytestmark = pytest.mark.integration

MAX_MB = 4  # the server's ESI_SERVE_MAX_REQUEST_MB: small, so the 413 test sends little


@pytest.fixture(scope="module")
def registered(tiny_checkpoint: Path, tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model registered in the session's MLflow, with reference embeddings of tiny_store."""
    import torch

    from esi.models.checkpoint import load_model, save_checkpoint
    from esi.registry import register_run

    run = tmp_path_factory.mktemp("run")
    model = load_model(tiny_checkpoint)
    torch.manual_seed(0)
    save_checkpoint(run / "model.pt", model, pretrain={"config": {"store": str(tiny_store)}})
    reg = register_run(run, (), name="esi_serving_test", reference_records=24)
    return reg.model_uri


@pytest.fixture(scope="module")
def bento(registered: str, bentoml_home: Path) -> str:
    from esi.serving.build import build_bento

    return build_bento(registered)


@pytest.fixture(scope="module")
def server(bento: str, bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    env = dict(os.environ, BENTOML_HOME=str(bentoml_home), ESI_SERVE_MAX_REQUEST_MB=str(MAX_MB),
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", bento, "--host", "127.0.0.1", "--port",
                             str(port)], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"bentoml serve exited: {Path(log.name).read_text()[-3000:]}"
            try:
                if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"bentoml serve not ready in 240 s: {Path(log.name).read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (its workers included)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def client(server: str):
    import bentoml

    with bentoml.SyncHTTPClient(server, timeout=120) as c:
        yield c


def _alive(server: str) -> None:
    assert requests.get(f"{server}/readyz", timeout=10).status_code == 200
    r = requests.post(f"{server}/embed", json={"ecg": ecg_batch(1).tolist(), "fs": 500}, timeout=60)
    assert r.status_code == 200, r.text


def test_info(client, registered: str, engine) -> None:
    info = client.info()
    assert info["model_uri"] == registered and info["version"] == "1" and info["name"] == "esi_serving_test"
    assert info["digest"] == engine.info["digest"]  # the bento serves exactly the registered weights
    assert info["labels"]["kind"] == "vocabulary" and info["labels"]["n"] == len(info["labels"]["ids"]) > 100
    assert info["device"] == "cpu" and info["preprocess"]["fs"] == 500


def test_embeddings_equal_in_process(client, server: str, engine) -> None:
    x = ecg_batch(3, 2500, seed=7)
    got = np.asarray(client.embed(ecg=x, fs=250.0)["embeddings"])
    np.testing.assert_allclose(got, engine.embed(x, fs=250), rtol=1e-4, atol=1e-5)
    plain = requests.post(f"{server}/embed", json={"ecg": x.tolist(), "fs": 250}, timeout=60)
    assert plain.status_code == 200
    np.testing.assert_allclose(np.asarray(plain.json()["embeddings"]), got, rtol=1e-5, atol=1e-6)


def test_zero_shot_caption_and_text(client, server: str, engine) -> None:
    from esi.serving.labels import resolve_labels

    x = ecg_batch(2, seed=8)
    out = client.zero_shot(ecg=x, fs=500.0, labels=["AF", "RBBB", "426783006"], prompts=["very wide QRS"], top_k=2)
    labels = resolve_labels(["AF", "RBBB", "426783006"], ["very wide QRS"])
    want = engine.zero_shot(engine.embed(x, 500), labels, 2)
    assert out["labels"]["ids"] == labels.ids and len(out["results"]) == 2
    for got, exp in zip(out["results"], want, strict=True):
        assert [t["id"] for t in got["top"]] == [t["id"] for t in exp["top"]]
        assert got["scores"] == pytest.approx(exp["scores"], abs=1e-4)
    default = requests.post(f"{server}/zero_shot", json={"ecg": x[:1].tolist()}, timeout=60).json()
    assert len(default["results"][0]["scores"]) == default["labels"]["n"] > 100
    assert len(default["results"][0]["top"]) == 5
    captions = client.caption(ecg=x, fs=500.0)["captions"]
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    text = np.asarray(client.embed_text(prompts=["atrial fibrillation"])["embeddings"])
    np.testing.assert_allclose(text, engine.embed_text(["atrial fibrillation"]), rtol=1e-4, atol=1e-5)


def test_score_files(client, server: str, wfdb_dir: Path, engine) -> None:
    from esi.serving.uploads import read_uploaded_records, record_windows

    files = sorted(wfdb_dir.glob("A000*"))
    out = client.score_files(files=files, labels=["AF", "sinus rhythm"], top_k=1)
    assert out["records"] == ["A0001", "A0002"]
    records = read_uploaded_records(wfdb_dir)
    records = [r for r in records if r.record_id.startswith("A")]
    emb = engine.embed_windows(record_windows(records, engine.preprocess, engine.limits))
    from esi.serving.labels import resolve_labels

    want = engine.zero_shot(emb, resolve_labels(["AF", "sinus rhythm"]), 1)
    assert [r["scores"] for r in out["results"]] == [pytest.approx(w["scores"], abs=1e-4) for w in want]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in files:
            zf.write(f, f"batch/{f.name}")
    zipped = requests.post(f"{server}/score_files", files=[("files", ("records.zip", buf.getvalue()))], timeout=60)
    assert zipped.status_code == 200 and zipped.json()["records"] == ["batch/A0001", "batch/A0002"]


def _zip(members: dict[str, bytes], link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symbolic link
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _bad_requests(wfdb: Path) -> list[tuple[str, str, dict, int, str]]:
    """(name, endpoint, requests kwargs, status, message fragment) for every bad-input class."""
    ok = ecg_batch(1).tolist()
    hea, mat = (wfdb / "A0001.hea").read_bytes(), (wfdb / "A0001.mat").read_bytes()
    with_nan = ecg_batch(1)
    with_nan[0, 3, 10] = np.nan
    nan_body = json.dumps({"ecg": with_nan.tolist(), "fs": 500})  # Python's json writes the NaN token
    assert "NaN" in nan_body
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    pickled = buf.getvalue()
    return [
        ("wrong lead count", "embed", {"json": {"ecg": ecg_batch(1)[:, :8].tolist(), "fs": 500}}, 400, "8 leads"),
        ("absurd fs", "embed", {"json": {"ecg": ok, "fs": 1e7}}, 400, "accepted range 50-10000 Hz"),
        ("zero fs", "zero_shot", {"json": {"ecg": ok, "fs": 0}}, 400, "field 'fs'"),
        ("NaN", "embed", {"data": nan_body, "headers": {"content-type": "application/json"}}, 400, "non-finite"),
        ("inf", "caption", {"json": {"ecg": (np.asarray(ok) * 1e39).tolist(), "fs": 500}}, 400, "non-finite"),
        ("empty ecg", "embed", {"json": {"ecg": [], "fs": 500}}, 400, "is empty"),
        ("missing ecg", "embed", {"json": {"fs": 500}}, 400, "ecg"),
        ("too short", "embed", {"json": {"ecg": ecg_batch(1, 400).tolist(), "fs": 500}}, 400, "accepted 2-120 s"),
        ("not json", "embed", {"data": b"{oops", "headers": {"content-type": "application/json"}}, 400, ""),
        ("oversized body", "embed", {"data": b"x" * (MAX_MB * 2**20 + 10),
                                     "headers": {"content-type": "application/json"}}, 413, "ESI_SERVE_MAX_REQUEST_MB"),
        ("unknown label", "zero_shot", {"json": {"ecg": ok, "labels": ["flux capacitor"]}}, 400, "flux capacitor"),
        ("bad top_k", "zero_shot", {"json": {"ecg": ok, "top_k": 0}}, 400, "top_k"),
        ("empty prompts", "embed_text", {"json": {"prompts": []}}, 400, "field 'prompts' is empty"),
        ("header only", "score_files", {"files": [("files", ("A0001.hea", hea))]}, 400, "was not uploaded"),
        ("malformed header", "score_files", {"files": [("files", ("A0001.hea", b"A0001 twelve 500\n")),
                                                       ("files", ("A0001.mat", mat))]}, 400, "field 'files'"),
        ("mismatched files", "score_files", {"files": [("files", ("A0001.hea", hea)),
                                                       ("files", ("A0001.mat", mat[:300]))]}, 400, "A0001"),
        ("upload ../ name", "score_files", {"files": [("files", ("../../A0001.hea", hea)),
                                                      ("files", ("A0001.mat", mat))]}, 400, "contains a path"),
        ("upload absolute name", "score_files", {"files": [("files", ("/tmp/A0001.hea", hea))]}, 400,
         "contains a path"),
        ("zip ../ member", "score_files", {"files": [("files", ("x.zip", _zip({"../A0001.hea": hea})))]}, 400,
         "not allowed"),
        ("zip symlink", "score_files", {"files": [("files", ("x.zip", _zip({"A0001.hea": hea}, link="A0001.mat")))]},
         400, "symbolic link"),
        ("json path instead of a file", "score_files", {"json": {"files": ["/etc/passwd"]}}, 400, ""),
        ("not a wfdb file", "score_files", {"files": [("files", ("notes.txt", b"hello"))]}, 400, "not a WFDB file"),
        ("npy: not a .npy", "embed_npy", {"files": [("ecg", ("x.npy", b"[[1, 2, 3]]"))]}, 400, "is not a .npy file"),
        ("npy: pickled", "embed_npy", {"files": [("ecg", ("x.npy", pickled))]}, 400, "unreadable .npy"),
        ("npy: wrong lead count", "zero_shot_npy", {"files": [("ecg", ("x.npy", _npy(ecg_batch(1)[:, :8])))]}, 400,
         "8 leads"),
        ("npy: NaN", "embed_npy", {"files": [("ecg", ("x.npy", _npy(with_nan)))]}, 400, "non-finite"),
        ("npy: absurd fs", "embed_npy", {"files": [("ecg", ("x.npy", _npy(ecg_batch(1))))], "data": {"fs": "1e7"}},
         400, "accepted range 50-10000 Hz"),
        ("npy: missing file", "embed_npy", {"data": {"fs": "500"}}, 400, ""),
        ("windows of another shape", "encode", {"json": {"windows": np.zeros((1, 12, 100)).tolist()}}, 400,
         "expected (n, 12, 5000)"),
    ]


def test_every_bad_input_gets_its_4xx_and_the_server_keeps_answering(server: str, wfdb_dir: Path) -> None:
    failures = []
    for name, endpoint, kwargs, status, fragment in _bad_requests(wfdb_dir):
        r = requests.post(f"{server}/{endpoint}", timeout=60, **kwargs)
        if r.status_code != status or fragment not in r.text:
            failures.append(f"{name}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    _alive(server)


def test_nothing_outside_the_request_folder_was_read_or_written(server: str, wfdb_dir: Path, tmp_path: Path) -> None:
    """A header naming ../secret.dat next to the upload folder is refused before the file is opened."""
    text = (wfdb_dir / "00005_hr.hea").read_text().replace("00005_hr.dat", "../secret.dat")
    r = requests.post(f"{server}/score_files", files=[("files", ("evil.hea", text.encode()))], timeout=60)
    assert r.status_code == 400 and "outside the upload" in r.text
    _alive(server)


def test_concurrent_requests_share_batches(server: str) -> None:
    x = ecg_batch(1)
    before = requests.post(f"{server}/info", json={}, timeout=60).json()["batching"]
    body = {"ecg": x.tolist(), "fs": 500}

    def call(i: int) -> int:
        if i % 2:
            return requests.post(f"{server}/embed_npy", files={"ecg": ("x.npy", _npy(x))}, timeout=120).status_code
        return requests.post(f"{server}/embed", json=body, timeout=120).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(16))) == [200] * 16
    after = requests.post(f"{server}/info", json={}, timeout=60).json()["batching"]
    assert after["windows"] - before["windows"] == 16
    assert after["batches"] - before["batches"] < 16, "no two requests shared a forward pass"
    assert after["max_batch_size"] == 64 and after["refused"] == 0
    metrics = requests.get(f"{server}/metrics", timeout=10).text
    counts = [ln for ln in metrics.splitlines() if ln.startswith("esi_forward_batch_size_count")]
    assert counts and float(counts[0].rsplit(" ", 1)[1]) >= after["batches"], metrics[-2000:]


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def test_binary_path_equals_in_process(client, server: str, engine, tmp_path: Path) -> None:
    """.npy uploads give the in-process embeddings and the same zero-shot result as the JSON body."""
    x = ecg_batch(3, 2500, seed=7)
    path = tmp_path / "ecg.npy"
    np.save(path, x.astype(np.float64))
    got = np.asarray(client.embed_npy(ecg=path, fs=250.0)["embeddings"])
    np.testing.assert_allclose(got, engine.embed(x, fs=250), rtol=1e-4, atol=1e-5)
    plain = requests.post(f"{server}/embed_npy", files={"ecg": ("ecg.npy", _npy(x))}, data={"fs": "250"}, timeout=60)
    assert plain.status_code == 200, plain.text
    np.testing.assert_allclose(np.asarray(plain.json()["embeddings"]), got, rtol=1e-5, atol=1e-6)
    fields = {"labels": json.dumps(["AF", "RBBB"]), "top_k": "1", "fs": "500"}
    npy = requests.post(f"{server}/zero_shot_npy", files={"ecg": ("x.npy", _npy(x[:1, :, :2500]))}, data=fields,
                        timeout=60)
    js = requests.post(f"{server}/zero_shot", json={"ecg": x[:1, :, :2500].tolist(), "labels": ["AF", "RBBB"],
                                                    "top_k": 1}, timeout=60)
    assert npy.status_code == js.status_code == 200, npy.text
    a, b = npy.json()["results"][0], js.json()["results"][0]
    assert a["top"][0]["id"] == b["top"][0]["id"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_free_text_prompts_keep_the_label_cache_bounded(server: str) -> None:
    x = ecg_batch(1, 1000).tolist()
    for i in range(36):
        r = requests.post(f"{server}/zero_shot", json={"ecg": x, "fs": 100, "prompts": [f"pattern {i}"]}, timeout=60)
        assert r.status_code == 200 and r.json()["labels"]["ids"] == ["prompt_0"]
    cache = requests.post(f"{server}/info", json={}, timeout=60).json()["label_cache"]
    assert cache["entries"] == cache["max_entries"] == 32  # 36 label sets seen, the least recent dropped
    _alive(server)


def test_score_through_the_service_equals_in_process(server: str, registered: str, tiny_store: Path,
                                                     label_file: Path, tmp_path: Path) -> None:
    from esi.serving.score import score

    kw = {"labels": str(label_file), "part_size": 10, "progress": False}
    http = score(tiny_store, tmp_path / "http", model=server, **kw)
    local = score(tiny_store, tmp_path / "local", model=registered, **kw)
    a = pd.read_parquet(tmp_path / "http" / "scores").sort_values("record_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "local" / "scores").sort_values("record_id").reset_index(drop=True)
    assert a["record_id"].tolist() == b["record_id"].tolist() and len(a) == 24
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), rtol=1e-4, atol=1e-5)
    cols = [c for c in a.columns if c.startswith("score_")]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=1e-4, atol=1e-5)
    assert http.model_version == local.model_version == "1"
    for s in (http, local):  # the registered version carries reference embeddings: drift is computed
        assert s.drift["available"] and 0 < s.drift["p_value"] <= 1
    summary = json.loads((tmp_path / "http" / "summary.json").read_text())
    assert summary["records"] == 24 and summary["model_version"] == "1" and summary["drift"]["available"]


def test_bento_holds_what_pyproject_says(bento: str, bentoml_home: Path) -> None:
    import bentoml

    b = bentoml.bentos.get(bento)
    src = Path(b.path) / "src"
    assert (src / "esi" / "serving" / "service.py").is_file()
    assert (src / "esi" / "conditions" / "data" / "conditions.csv").is_file()
    assert not list(src.rglob("__pycache__")) and not (src / "tests").exists() and not (src / ".venv").exists()
    # The tag is the registry version, prefixed with the registered name when it is not the default "esi".
    assert bento == "esi:esi_serving_test-1"
