"""The same round trip against a real ``mlflow server`` on 127.0.0.1 (SQLite backend, local artifact root):
artifacts are uploaded through the server and downloaded from it on load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """An mlflow server started for this module (not waited for: see _wait_ready), its process group stopped after."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
        # No background job runner (eight huey worker processes): the registry needs none of it.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        yield {"url": url, "artifacts": root / "artifacts", "proc": proc, "log": root / "server.log"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        import mlflow

        from esi.settings import get_settings

        mlflow.set_tracking_uri(get_settings().tracking_uri)  # later tests must not talk to a dead server


def _wait_ready(server: dict, timeout: float = 120.0) -> None:
    """Poll /health (the server starts while the session's run fixture is built)."""
    deadline = time.monotonic() + timeout
    while True:
        if server["proc"].poll() is not None:
            raise RuntimeError(f"mlflow server exited ({server['proc'].returncode}): {server['log'].read_text()}")
        try:
            with urllib.request.urlopen(f"{server['url']}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server not ready after {timeout:g} s: {server['log'].read_text()}")
        time.sleep(0.5)


def test_round_trip_through_a_tracking_server(server, run) -> None:
    import mlflow

    from esi.models.checkpoint import load_model as load_checkpoint
    from esi.registry import load_model, load_reference, model_card, promote, register_run

    _wait_ready(server)
    url, artifact_root = server["url"], server["artifacts"]
    run_dir, eval_dir, _ = run
    reg = register_run(run_dir, [eval_dir], "esi-srv", tracking_uri=url)
    assert reg.created and reg.version == 1
    # The pretraining run is in another store: the model went into a registration run on the server, and its
    # files into the server's artifact root (uploaded over HTTP), not into ESI_HOME.
    uploaded = list(artifact_root.rglob("weights.pt"))
    assert len(uploaded) == 1
    again = register_run(run_dir, [eval_dir], "esi-srv", tracking_uri=url)
    assert not again.created and again.version == 1
    zs = "synthetic.superdiagnostic.zero_shot.macro_auc"
    refused = promote("esi-srv", require=[f"{zs}>=1.01"], tracking_uri=url)
    assert not refused.passed
    ok = promote("esi-srv", require=[f"{zs}>=0"], compare="champion", tracking_uri=url)
    assert ok.passed
    model = load_model("models:/esi-srv@champion", tracking_uri=url)
    assert model.registry_info["version"] == 1 and model.registry_info["digest"] == reg.digest
    x = torch.from_numpy(np.random.default_rng(5).normal(0, 0.3, (2, 12, 500)).astype(np.float32))
    with torch.no_grad():
        expected = load_checkpoint(run_dir / "model.pt").encode_ecg(x).numpy()
        assert np.allclose(model.encode_ecg(x).numpy(), expected, atol=1e-6)
    mlflow.set_tracking_uri(url)
    assert np.allclose(mlflow.pyfunc.load_model("models:/esi-srv@champion").predict(x.numpy()), expected, atol=1e-5)
    assert load_reference("models:/esi-srv@champion", tracking_uri=url).shape[1] == 32
    info, card = model_card("esi-srv@champion", tracking_uri=url)
    assert info["validation_status"] == "passed" and f"`{reg.digest}`" in card
    # Tampering with the stored file on the server side is caught at the next load.
    weights = uploaded[0]
    weights.write_bytes(weights.read_bytes()[:-100])
    from esi.errors import RegistryError

    with pytest.raises(RegistryError, match="esi-srv v1"):
        load_model("models:/esi-srv/1", tracking_uri=url)
