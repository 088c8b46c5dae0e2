"""One writer per output: an exclusive lock file beside the output (a store folder, a captions table, a
score folder).

``with exclusive_lock(out, "esi data prepare"):`` creates ``.<name>.lock`` next to ``out`` (beside it, not in
it, so ``--overwrite`` can delete the output while the lock stays held) and holds an ``flock`` on it for the
duration. The file records who holds it: PID, host, start time and what runs. Rules:

* held by a live process -> wait up to ``timeout`` seconds, then raise LockedError
  "OUT is locked by PID 123 on HOST (esi data prepare) since 2026-12-01T08:00:00; fix: ...";
* left behind by a process that died (kill -9, a crash) on this host -> taken over, with a warning;
* written by a process on another host (a shared volume) that still looks held -> treated as held
  (this host cannot tell whether that PID lives); the message says which file to delete once it is not.

``shared=True`` takes the lock in shared mode: several holders at once (the ``--shard i/n`` tasks of one
prepare), none of them while an exclusive holder runs, and vice versa. A shared holder records itself in a
lock file of its own (``.<name>.lock.<key>``) so that the refusal message can still name the PIDs.

The kernel releases an ``flock`` when its process dies, so a crash never leaves a lock that blocks forever;
the recorded PID only feeds the messages and the stale-lock warning. A forked child inherits the lock's file
descriptor, and with it the lock: worker processes call :func:`close_inherited_locks` so that a lock is held
by its owner alone and dies with it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from esi.errors import LockedError

log = logging.getLogger(__name__)
POLL_S = 0.2
_HELD: set[int] = set()  # descriptors of the locks this process holds (see close_inherited_locks)


def close_inherited_locks() -> None:
    """In a forked child: close the lock descriptors inherited from the parent (the parent keeps its locks:
    an flock is released only when every descriptor of it is closed, or by its owner)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: ``.<name>.lock`` in the output's parent folder."""
    p = Path(path).absolute()
    return p.parent / f".{p.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.strip():
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {"pid": "?", "host": "?", "since": "?", "what": f"unreadable lock file {path}"}
    return info if isinstance(info, dict) else None


def _owner_alive(info: dict[str, Any]) -> bool:
    """Whether a recorded holder may still run: a live PID here, or any PID on another host."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        return _pid_alive(int(info.get("pid")))
    except (TypeError, ValueError):
        return False


def _describe(info: dict[str, Any]) -> str:
    return (f"PID {info.get('pid')} on {info.get('host')} ({info.get('what')}) since {info.get('since')}")


def _open_locked(path: Path, mode: int) -> tuple[int, bool] | None:
    """Open ``path`` and take ``mode`` without blocking: (fd, whether the kernel lock is held), or None when
    someone else holds it.

    The file is re-checked after locking: a holder that released (and unlinked) it meanwhile would otherwise
    leave us holding a lock on a file nobody else can see."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                # a volume without flock support: the recorded owner (PID, host) is the only guard left
                log.warning("%s does not support file locks (%s); relying on the recorded owner only", path,
                            exc.strerror)
                return fd, False
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, True
        os.close(fd)


def _holders(path: Path) -> list[dict[str, Any]]:
    """Recorded holders of a lock: the exclusive owner and the shared ones."""
    infos = [_read_owner(path)] + [_read_owner(p) for p in sorted(path.parent.glob(path.name + ".*"))]
    return [i for i in infos if i]


def _record(fd: int, info: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    os.fsync(fd)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str, *, timeout: float = 0.0, shared: bool = False,
                   key: str | None = None) -> Iterator[Path]:
    """Hold the lock of output ``path`` while the block runs (see the module docstring).

    Args:
        path: the output (folder or file) to protect; its parent folder is created if needed.
        what: the command, for messages ("esi data prepare --shard 0/4").
        timeout: seconds to wait for a live holder before raising LockedError (0: do not wait).
        shared: take it in shared mode (the parallel shard tasks of one output).
        key: name of a shared holder's own record file (default: the PID).
    Yields the lock file's path.
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
          "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "shared": shared}
    deadline = time.monotonic() + max(0.0, timeout)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        opened = _open_locked(lock, mode)
        if opened is not None:
            fd, kernel_lock = opened
            owner = _read_owner(lock)
            if owner is None:
                break
            mine = owner.get("pid") == os.getpid() and owner.get("host") == me["host"]
            # holding the kernel lock, a record of our own PID is a leftover (PID reuse after a crash)
            if not _owner_alive(owner) or (mine and kernel_lock):
                log.warning("taking over the stale lock %s of %s: that process is gone", lock, _describe(owner))
                os.ftruncate(fd, 0)
                break
            os.close(fd)  # recorded by a live holder the kernel lock cannot see (another host, no flock)
        holders = [h for h in _holders(lock) if _owner_alive(h)]
        if time.monotonic() >= deadline:
            who = "; ".join(_describe(h) for h in holders) or "another process"
            raise LockedError(f"{path} is locked by {who}; fix: wait for it to finish (or pass a wait timeout), "
                              f"or, if no such process runs any more, delete {lock}")
        time.sleep(POLL_S)
    if not shared:  # records of shard tasks that died cannot hold anything any more
        for p in lock.parent.glob(lock.name + ".*"):
            info = _read_owner(p)
            if info is None or not _owner_alive(info):
                p.unlink(missing_ok=True)
    own_record = lock.parent / f"{lock.name}.{key or os.getpid()}" if shared else None
    _HELD.add(fd)
    try:
        if shared:
            own_record.write_text(json.dumps(me) + "\n")
        else:
            _record(fd, me)
        yield lock
    finally:
        if own_record is not None:
            own_record.unlink(missing_ok=True)
        else:
            os.ftruncate(fd, 0)  # an empty lock file means 'free' to anyone who reads it
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        _HELD.discard(fd)
        os.close(fd)
