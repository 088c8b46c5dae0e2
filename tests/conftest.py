"""Shared fixtures: real sample records, an isolated ESI_HOME, and no network beyond loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

import pytest

REAL = Path(__file__).parent / "fixtures" / "real"

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address) -> None:  # type: ignore[no-untyped-def]
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None  # a host name: resolution already had to succeed, so refuse anything but localhost
            if host != "localhost":
                raise OSError(f"tests may not reach the network ({host}); use a local server") from None
        if ip is not None and not ip.is_loopback:
            raise OSError(f"tests may not reach the network ({host}); use a local server")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> None:
    """Any attempt to reach a host other than loopback fails loudly (a hidden download is a bug)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session works in its own ESI_HOME, never the user's ./.esi."""
    home = tmp_path_factory.mktemp("esi_home")
    os.environ["ESI_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from esi.settings import get_settings

    get_settings.cache_clear()
    return home


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """Folder of the real sample records (tests/fixtures/real)."""
    return REAL


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    """Settings are re-read after each test, and the MLflow tracking URI a test pointed elsewhere is put back:
    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI, which the settings read (a test that talked to its
    own, since stopped, mlflow server would otherwise send every later test there)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    from esi.settings import get_settings

    if os.environ.get("MLFLOW_TRACKING_URI") != before:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
        get_settings.cache_clear()
        if "mlflow" in sys.modules:
            import mlflow

            mlflow.set_tracking_uri(before or get_settings().tracking_uri)
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
    get_settings.cache_clear()
