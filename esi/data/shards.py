"""Shard files: float16 signal arrays streamed to ``.npy`` files, checked cheaply, and committed atomically.

A shard (``shards/shard-00000/``) holds ``signals.npy`` (windows, leads, samples), ``manifest.parquet`` and
``rejects.parquet``. It is built in a temporary folder beside it and renamed when complete, so a killed run
(even ``kill -9``) leaves no half shard and a re-run rebuilds only what is missing.

Signals are streamed: :class:`NpyWriter` writes each window as it comes behind a header of fixed size and
writes the final shape into that header when it is closed, so neither a worker nor the parent ever holds a
shard in memory. A shard built by several workers in parts is joined with ``copy_file_range`` (the kernel
copies the pages; nothing passes through Python).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.layout import FILE_MODE, REJECT_COLUMNS, SHARD_FILES, SIGNAL_DTYPE, shard_dir
from esi.errors import StoreError

NPY_HEADER_BYTES = 128  # magic + version + length + the header dict padded: room for any 3-d shape


def npy_header(shape: Sequence[int], dtype: str = SIGNAL_DTYPE, size: int = NPY_HEADER_BYTES) -> bytes:
    """A version 1.0 ``.npy`` header of exactly ``size`` bytes for a C-ordered array (what np.load reads)."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    dims = tuple(int(s) for s in shape)
    body = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {dims!r}, }}"
    pad = size - 10 - len(body) - 1
    if pad < 0:
        raise StoreError(f"shape {tuple(shape)} does not fit a {size}-byte .npy header")
    return np.lib.format.MAGIC_PREFIX + b"\x01\x00" + struct.pack("<H", size - 10) + (
        body + " " * pad + "\n").encode("latin1")


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a ``.npy`` file, from its first few hundred bytes.

    Raises FileNotFoundError, or ValueError/OSError/SyntaxError for a file that is not a NumPy array file."""
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
        return shape, dtype, fh.tell()


class NpyWriter:
    """Stream (leads, samples) windows into a ``.npy`` file of shape (count, leads, samples), float16."""

    def __init__(self, path: str | Path, shape: tuple[int, int]) -> None:
        self.path, self.shape, self.count = Path(path), tuple(shape), 0
        self._fh = self.path.open("wb")
        self._fh.write(npy_header((0, *self.shape)))  # rewritten with the count by close()

    def append(self, window: np.ndarray) -> None:
        """Write one window (any float dtype; converted to float16 once, here)."""
        if window.shape != self.shape:
            raise StoreError(f"window of shape {window.shape} for a shard of ({self.shape}); file: {self.path}")
        self._fh.write(np.ascontiguousarray(window, dtype=SIGNAL_DTYPE).data)
        self.count += 1

    def append_file(self, part: Path) -> None:
        """Append every window of another ``.npy`` written by an NpyWriter of the same shape."""
        shape, _, offset = read_npy_header(part)
        if tuple(shape[1:]) != self.shape:
            raise StoreError(f"part {part} holds windows of shape {shape[1:]}, not {self.shape}")
        nbytes = int(np.prod(shape)) * np.dtype(SIGNAL_DTYPE).itemsize
        self._fh.flush()
        with part.open("rb") as src:
            _copy_range(src.fileno(), offset, self._fh.fileno(), nbytes)
        self._fh.seek(0, os.SEEK_END)
        self.count += int(shape[0])

    def close(self) -> int:
        """Write the final shape into the header and close; returns the number of windows."""
        if not self._fh.closed:
            self._fh.seek(0)
            self._fh.write(npy_header((self.count, *self.shape)))
            self._fh.close()
        return self.count

    def abort(self) -> None:
        """Close without finishing (the file is left behind in its temporary folder)."""
        self._fh.close()


def _copy_range(src: int, offset: int, dst: int, nbytes: int) -> None:
    """Copy ``nbytes`` from ``src`` at ``offset`` to the end of ``dst`` (in the kernel where it can)."""
    os.lseek(dst, 0, os.SEEK_END)
    copied = 0
    try:
        while copied < nbytes:
            n = os.copy_file_range(src, dst, nbytes - copied, offset + copied)
            if n == 0:
                break
            copied += n
    except (AttributeError, OSError):  # no copy_file_range (old kernel, macOS, across file systems)
        os.lseek(src, offset + copied, os.SEEK_SET)
        while copied < nbytes:
            chunk = os.read(src, min(1 << 24, nbytes - copied))
            if not chunk:
                break
            os.write(dst, chunk)
            copied += len(chunk)
    if copied != nbytes:
        raise StoreError(f"shard part truncated: {copied} of {nbytes} bytes copied")


def shard_done(store: Path, k: int) -> bool:
    """Whether shard ``k`` is complete (its folder has its final name and all its files)."""
    d = shard_dir(store, k)
    return all((d / f).is_file() for f in SHARD_FILES)


def fresh_tmp_dir(store: Path, k: int) -> Path:
    """An empty temporary folder for building shard ``k``, unique to this process; leftovers of killed runs
    are deleted first (the caller holds the store's or the shard's lock, so no live run owns them)."""
    shards = Path(store) / "shards"
    for old in shards.glob(f".tmp-shard-{k:05d}*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = shards / f".tmp-shard-{k:05d}.{os.getpid()}"
    tmp.mkdir(parents=True)
    return tmp


def commit_shard(store: Path, k: int, tmp: Path, parts: Sequence[Path], rows: list[dict[str, Any]],
                 rejects: list[dict[str, Any]], shape: tuple[int, int]) -> None:
    """Join the parts' signals, write the shard's manifest and rejects, and rename ``tmp`` into place."""
    import pandas as pd

    signals = tmp / "signals.npy"
    if len(parts) == 1:
        os.replace(parts[0], signals)
    else:
        writer = NpyWriter(signals, shape)
        try:
            for part in parts:
                writer.append_file(part)
        finally:
            writer.close()
        for part in parts:
            part.unlink()
    manifest = pd.DataFrame(rows)
    if len(manifest):
        manifest["shard"] = k
        manifest["row"] = np.arange(len(manifest))
    manifest.to_parquet(tmp / "manifest.parquet", index=False)
    pd.DataFrame(rejects, columns=list(REJECT_COLUMNS)).to_parquet(tmp / "rejects.parquet", index=False)
    for f in tmp.iterdir():
        os.chmod(f, FILE_MODE)
    final = shard_dir(store, k)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # the shard is complete exactly when its folder has its final name
