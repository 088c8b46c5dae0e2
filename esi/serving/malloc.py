"""glibc malloc settings of the long-running serving processes (no-ops on other C libraries).

Both are process-wide ``mallopt`` calls, made once at start, and only ever lower resident memory:

- :func:`limit_arenas` (the service): glibc gives threads that allocate concurrently their own arenas (up to
  8 per core), each keeping freed memory for reuse; with two the worker's RSS levels off ~90 MiB lower
  under 32 concurrent clients, at no measurable cost (its threads allocate large arrays, rarely).
- :func:`fix_mmap_threshold` (``esi score``): glibc raises its mmap threshold after each large free, up to
  32 MiB, so batch buffers and activations (15 MiB and more) move into the heap, whose fragmentation grew a
  scoring run by ~100 MiB over its first parts; with a fixed 1 MiB threshold they are mapped and returned
  when freed. Not used by the service: there the extra page faults cost a third of its throughput.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _mallopt(param: int, value: int) -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(param, value))
    except (OSError, AttributeError):  # an unusual libc layout: keep the defaults
        log.debug("mallopt unavailable; glibc defaults kept")
        return False


def limit_arenas(n: int = 2) -> bool:
    """At most ``n`` malloc arenas from now on (True when set)."""
    return _mallopt(_M_ARENA_MAX, int(n))


def fix_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Allocations of ``nbytes`` and more are mmapped and returned when freed (True when set)."""
    return _mallopt(_M_MMAP_THRESHOLD, int(nbytes))
