"""glibc malloc settings of the serving processes: applied where glibc is, skipped elsewhere."""

from __future__ import annotations

import platform

from esi.serving.malloc import fix_mmap_threshold, limit_arenas


def test_mallopt_settings_apply_on_glibc_only() -> None:
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert limit_arenas(8) is on_glibc  # 8: glibc's own per-core default, harmless for the test process
    assert fix_mmap_threshold(1 << 20) is on_glibc
