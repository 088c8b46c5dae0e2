"""Fixtures of the serving tests: a tiny esi_test checkpoint, its Engine, small stores and WFDB folders.

BENTOML_HOME points into the session's ESI_HOME before bentoml is first used, so nothing touches ~/bentoml.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serving_helpers import ecg_batch

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


@pytest.fixture(scope="session")
def bentoml_home(_isolated_home: Path) -> Path:
    home = _isolated_home / "bentoml"
    os.environ["BENTOML_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised esi_test model saved as an ESI checkpoint (seeded: the same weights each run)."""
    import torch

    from esi.models import create_model
    from esi.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("esi_test", text_pretrained=False)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model)


@pytest.fixture(scope="session")
def engine(tiny_checkpoint: Path):
    from esi.serving.engine import Engine

    return Engine.from_uri(str(tiny_checkpoint), batch_size=16)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete store of 24 records (3 shards) at 500 Hz, 5 000 samples."""
    from esi.data.store import write_store

    path = tmp_path_factory.mktemp("store") / "store"
    rows = [{"record_id": f"rec{i:03d}", "source": "synthetic", "path": f"synthetic/rec{i:03d}"} for i in range(24)]
    return write_store(path, rows, ecg_batch(24, seed=1), shard_size=10)


@pytest.fixture(scope="session")
def label_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three labels: by abbreviation, name and SNOMED id (few prompts: fast to embed)."""
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("# conditions to score\nAFIB\nsinus rhythm\n59118001  # right bundle branch block\n")
    return path


@pytest.fixture
def wfdb_dir(tmp_path: Path) -> Path:
    """Real WFDB records (PTB-XL 500 Hz .dat and CPSC 2018 .mat) copied into a fresh folder."""
    out = tmp_path / "wfdb"
    out.mkdir()
    for rel in ("ptbxl/records500/00000/00005_hr", "ptbxl/records500/00000/00666_hr",
                "ptbxl/records500/00000/00841_hr", "cpsc2018/A0001", "cpsc2018/A0002"):
        for f in (REAL / rel).parent.glob(Path(rel).name + ".*"):
            shutil.copy(f, out / f.name)
    return out
