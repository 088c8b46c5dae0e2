"""SQLite cache of waveform descriptions, keyed by (signature, prompt version, generator, kb version).

Safe for concurrent use: WAL journal, one connection per thread, a busy timeout, and ``INSERT OR IGNORE`` so
two processes captioning at the same time never corrupt or duplicate an entry (the first insert wins; both
wrote a description for the same key, so either is valid).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from esi.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS descriptions (
    key TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    generator TEXT NOT NULL,
    kb_version TEXT NOT NULL,
    description TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
)
"""


def cache_key(signature: str, prompt_version: str, generator: str, kb_version: str) -> str:
    """The primary key of one entry (a hash, so long signatures keep the index small)."""
    raw = "\x1f".join((signature, prompt_version, generator, kb_version))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedDescription:
    """One cache entry."""

    signature: str
    description: str
    input_tokens: int
    output_tokens: int


class CaptionCache:
    """Descriptions per (signature, prompt version, generator, kb version)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def _init_schema(self) -> None:
        """Switch to WAL and create the table, waiting out other openers.

        SQLite answers a journal-mode change or a schema write with "database is locked" at once, without
        calling the busy handler, while another connection is doing the same; so a lock here is retried until
        ``timeout_s`` and only then reported. Any other database error means the file is not a usable cache.
        """
        deadline = time.monotonic() + self.timeout_s
        delay = 0.01
        while True:
            try:
                con = self._con()
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
                con.execute(SCHEMA)
                con.commit()
                return
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() >= deadline:
                    raise DataError(f"the caption cache could not be opened: {exc}", path=str(self.path),
                                    fix="if another job holds it, wait for it; otherwise delete the file "
                                        "(it is only a cache) or pass another --cache") from exc
                self._con().rollback()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except sqlite3.DatabaseError as exc:
                raise DataError(f"the caption cache is not a readable SQLite database: {exc}",
                                path=str(self.path),
                                fix="delete the file (it is only a cache) or pass another --cache") from exc

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=self.timeout_s)
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            # WAL + NORMAL: each transaction stays atomic; only the last ones may be lost on power failure,
            # which for a cache just means regenerating them
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get_many(self, signatures: Iterable[str], prompt_version: str, generator: str,
                 kb_version: str) -> dict[str, CachedDescription]:
        """The cached entries among ``signatures`` (signature -> entry)."""
        by_key = {cache_key(s, prompt_version, generator, kb_version): s for s in signatures}
        out: dict[str, CachedDescription] = {}
        keys = list(by_key)
        con = self._con()
        for start in range(0, len(keys), 500):  # SQLite limits the number of bound parameters
            chunk = keys[start:start + 500]
            rows = con.execute(
                "SELECT key, description, input_tokens, output_tokens FROM descriptions WHERE key IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
            for key, desc, n_in, n_out in rows:
                out[by_key[key]] = CachedDescription(by_key[key], desc, int(n_in), int(n_out))
        return out

    def get(self, signature: str, prompt_version: str, generator: str, kb_version: str) -> str | None:
        """One description, or None."""
        hit = self.get_many([signature], prompt_version, generator, kb_version).get(signature)
        return hit.description if hit else None

    def put(self, signature: str, prompt_version: str, generator: str, kb_version: str, description: str,
            input_tokens: int = 0, output_tokens: int = 0) -> bool:
        """Insert atomically; returns False when another writer stored this key first."""
        con = self._con()
        with con:  # one transaction: committed, or rolled back on error
            cur = con.execute(
                "INSERT OR IGNORE INTO descriptions (key, signature, prompt_version, generator, kb_version, "
                "description, input_tokens, output_tokens, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cache_key(signature, prompt_version, generator, kb_version), signature, prompt_version,
                 generator, kb_version, description, int(input_tokens), int(output_tokens), time.time()))
        return cur.rowcount == 1

    def put_many(self, entries: Iterable[tuple[str, str, str, str, str, int, int]]) -> int:
        """Insert many (signature, prompt_version, generator, kb_version, description, input_tokens,
        output_tokens) in one transaction; returns how many were new."""
        rows = [(cache_key(sig, pv, gen, kv), sig, pv, gen, kv, desc, int(n_in), int(n_out), time.time())
                for sig, pv, gen, kv, desc, n_in, n_out in entries]
        if not rows:
            return 0
        con = self._con()
        before = con.total_changes
        with con:
            con.executemany(
                "INSERT OR IGNORE INTO descriptions (key, signature, prompt_version, generator, kb_version, "
                "description, input_tokens, output_tokens, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return con.total_changes - before

    def __len__(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM descriptions").fetchone()[0])

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
