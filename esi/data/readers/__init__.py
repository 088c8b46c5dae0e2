"""Readers per source. Each has ``list_refs(root, ...) -> list[RecordRef]`` (cheap, in the main process) and
``read(ref) -> EcgRecord`` (in worker processes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from esi.data.readers.base import RecordRef
from esi.data.record import EcgRecord
from esi.errors import ConfigError

SOURCES = ("ptbxl", "challenge", "icbeb", "mimic", "wfdb")


def get_reader(source: str) -> ModuleType:
    """The reader module of a source name."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    import importlib

    module = "wfdb_dir" if source == "wfdb" else source
    return importlib.import_module(f"esi.data.readers.{module}")


def list_refs(source: str, root: str | Path, **kwargs: object) -> list[RecordRef]:
    """References of every record of ``source`` under ``root``."""
    return get_reader(source).list_refs(root, **kwargs)


def read_fn(source: str) -> Callable[[RecordRef], EcgRecord]:
    """The ``read`` function of a source."""
    return get_reader(source).read


def iter_records(source: str, root: str | Path, **kwargs: object):
    """Yield EcgRecords of a source (no preprocessing); convenient for notebooks and tests."""
    reader = get_reader(source)
    for ref in reader.list_refs(root, **kwargs):
        yield reader.read(ref)


__all__ = ["SOURCES", "RecordRef", "get_reader", "iter_records", "list_refs", "read_fn"]
