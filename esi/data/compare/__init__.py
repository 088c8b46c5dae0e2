"""Synthetic vs real ECG recordings on the same measurements: ``esi data compare SYNTH_STORE REAL_STORE``.

:func:`compare_stores` measures both stores with :mod:`esi.data.measure` and Welch spectra, ranks the
measurements by how far the synthetic distribution sits from the real one (Wasserstein distance in units of
the real IQR, KS alongside), compares conditions against each set's normal records, and writes report.md,
compare.json, measurements.parquet and plots. :func:`ludb_check` says how far the measurements themselves
agree with LUDB's cardiologist delineation.

Modules: :mod:`.features` (per-record measurements), :mod:`.stats` (summaries, distances, condition groups),
:mod:`.core` (measuring stores, the comparison), :mod:`.ludb`, :mod:`.plots`, :mod:`.report`.
"""

from __future__ import annotations

from esi.data.compare.core import check_preprocessing, compare_stores, measure_store
from esi.data.compare.features import feature_names, measure_record
from esi.data.compare.ludb import ludb_check
from esi.data.compare.stats import CONDITIONS, gap, parse_conditions, rank_gaps

__all__ = ["CONDITIONS", "check_preprocessing", "compare_stores", "feature_names", "gap", "ludb_check",
           "measure_record", "measure_store", "parse_conditions", "rank_gaps"]
