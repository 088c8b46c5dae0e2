"""Shard files (esi.data.shards) and the split of shards into parts (esi.data.prepare.part_sizes): windows
streamed to .npy files that np.load reads, parts joined in order, and a store built from parts by worker
processes equal to the one built in-process."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

import esi.data.prepare as prepare_module
from esi.data.prepare import part_sizes, prepare
from esi.data.shards import NPY_HEADER_BYTES, NpyWriter, npy_header, read_npy_header
from esi.data.store import EcgStore
from esi.errors import StoreError


def _windows(n: int, seed: int) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).normal(size=(n, 12, 50)) * 3)


def _write(path: Path, wins: list[np.ndarray]) -> Path:
    writer = NpyWriter(path, (12, 50))
    for w in wins:
        writer.append(w)
    assert writer.close() == len(wins)
    return path


def test_streamed_windows_are_a_loadable_npy(tmp_path: Path) -> None:
    wins = _windows(3, 0)
    path = _write(tmp_path / "s.npy", wins)
    assert read_npy_header(path) == ((3, 12, 50), np.dtype("float16"), NPY_HEADER_BYTES)
    assert path.stat().st_size == NPY_HEADER_BYTES + 3 * 12 * 50 * 2
    want = np.stack(wins).astype(np.float16)
    np.testing.assert_array_equal(np.load(path), want)
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), want)


def test_an_empty_part_is_a_loadable_npy(tmp_path: Path) -> None:
    assert np.load(_write(tmp_path / "e.npy", [])).shape == (0, 12, 50)


def test_header_and_shape_limits(tmp_path: Path) -> None:
    assert len(npy_header((10**12, 12, 5000))) == NPY_HEADER_BYTES
    with pytest.raises(StoreError, match="does not fit"):
        npy_header((10**40, 10**40, 10**40))
    writer = NpyWriter(tmp_path / "w.npy", (12, 50))
    with pytest.raises(StoreError, match="shape"):
        writer.append(np.zeros((12, 49)))
    writer.abort()


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_parts_are_joined_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool) -> None:
    if not kernel_copy:  # the portable path (no copy_file_range: other systems, other file systems)
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    parts = [_write(tmp_path / f"p{i}.npy", _windows(n, i)) for i, n in enumerate((2, 0, 3))]
    joined = NpyWriter(tmp_path / "signals.npy", (12, 50))
    for part in parts:
        joined.append_file(part)
    assert joined.close() == 5
    want = np.concatenate([np.load(p) for p in parts])
    np.testing.assert_array_equal(np.load(tmp_path / "signals.npy"), want)
    joined = NpyWriter(tmp_path / "again.npy", (12, 49))
    with pytest.raises(StoreError, match="shape"):
        joined.append_file(parts[0])  # windows of another length
    joined.abort()


def test_part_sizes_split_only_what_would_leave_workers_idle() -> None:
    assert part_sizes([1000, 1000], 2) == [[1000], [1000]]  # balanced already: no join needed
    assert part_sizes([1000] * 22, 8) == [[1000]] * 22  # plenty of shards
    assert part_sizes([1000, 500], 0) == [[1000], [500]]  # in-process
    for shards, workers in (([1000, 500], 2), ([100], 2), ([1000, 1000, 500], 2), ([999], 8)):
        sizes = part_sizes(shards, workers)
        assert [sum(p) for p in sizes] == shards
        assert sum(len(p) for p in sizes) > len(shards)
        assert all(max(p) - min(p) <= 1 for p in sizes)  # even parts within a shard
    assert part_sizes([40], 4) == [[40]]  # parts below min_part are not worth their join


@pytest.mark.parametrize("which", ["ptbxl", "corrupt"])
def test_a_store_built_in_parts_by_workers_equals_the_in_process_one(
        which: str, real_dir: Path, corrupt_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, root = ("ptbxl", real_dir / "ptbxl") if which == "ptbxl" else ("wfdb", corrupt_root)
    a = prepare(source, root, tmp_path / "a", progress=False, shard_size=100)
    monkeypatch.setattr(prepare_module, "part_sizes", functools.partial(part_sizes, min_part=1))
    b = prepare(source, root, tmp_path / "b", progress=False, shard_size=100, workers=2)
    assert (a.windows_written, a.rejected) == (b.windows_written, b.rejected) and a.shards_total == 1
    sa, sb = EcgStore(tmp_path / "a"), EcgStore(tmp_path / "b")
    assert sa.manifest.equals(sb.manifest)
    assert sa.rejects().equals(sb.rejects())
    np.testing.assert_array_equal(sa.signals(range(len(sa))), sb.signals(range(len(sb))))
    assert not list((tmp_path / "b" / "shards").glob(".tmp-*")) and not list(
        (tmp_path / "b" / "shards" / "shard-00000").glob("part-*"))
