"""Data validation with Great Expectations: the pipeline's first gate.

``validate_store(store, report_dir)`` computes per-record signal statistics streaming over the store, runs
three GX suites (header, manifest, signal statistics) and returns a :class:`ValidationReport`.

Severity and verdict:
- every expectation is ``critical`` or ``warning`` (thresholds.json, overridable per dataset with a JSON/TOML
  file; ``severity`` can also switch an expectation ``off``); ``strict`` turns warnings into critical and
  sets the quarantine limit to 0 (any critical failure fails the step);
- record-level critical failures quarantine the failing records (STORE/quarantine.parquet, honoured by
  EcgStore.indices and EcgStoreDataset); dataset-level critical failures fail the step; so does a quarantined
  share above ``quarantine.max_fraction`` (10 % by default).

GX is imported only inside the functions that run the suites (it costs seconds to import).
"""

from esi.validation.config import CATALOG, default_thresholds, load_thresholds
from esi.validation.validate import Failure, ValidationReport, validate_store

__all__ = ["CATALOG", "Failure", "ValidationReport", "default_thresholds", "load_thresholds",
           "validate_store"]
