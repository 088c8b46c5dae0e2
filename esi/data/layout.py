"""What a store is on disk: its constants, file names, and the atomic writes every part of it goes through.

Every file is written to a temporary name in its folder and renamed, so a crash never leaves a half-written
file that looks complete, and every file gets the same permission mode (0666 less the umask).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
STORE_FORMAT = "esi-store"  # header.json 'format': the proof that a folder is an ESI store (--overwrite)
SIGNAL_DTYPE = "float16"
MANIFEST_COLUMNS = (
    "record_id", "source", "subject_id", "age", "sex", "fold", "label_system", "labels", "conditions",
    "report", "path", "original_fs", "original_n_samples", "window", "padded_samples", "nan_fraction",
    "nan_filled", "shard", "row",
)
REJECT_COLUMNS = ("record_id", "path", "reason")
SHARD_FILES = ("signals.npy", "manifest.parquet", "rejects.parquet")


def _file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # what open() gives a new file; mkstemp's 0600 would differ from np.save's files


def shard_dir(store: str | Path, k: int) -> Path:
    """The folder of shard ``k`` of a store."""
    return Path(store) / "shards" / f"shard-{k:05d}"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a DataFrame as parquet."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def is_esi_store(path: str | Path) -> bool:
    """Whether ``path`` holds an ESI store (finished or not): its header.json says so."""
    try:
        header = json.loads((Path(path) / "header.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(header, dict):
        return False
    # stores written before the 'format' field: their header has ESI's schema version and plan/leads
    return header.get("format") == STORE_FORMAT or ("schema_version" in header and (
        "plan" in header or "leads" in header))
