"""Benchmark suite: PTB-XL / ICBEB / synthetic / custom benchmarks; zero-shot, linear probe, fine-tune,
1-shot identification, baselines; metrics with bootstrap CIs; reports and MLflow logging.

Entry point: :func:`esi.evaluation.run.evaluate` (``esi evaluate`` on the command line). Sub-modules import
torch / scikit-learn / mlflow on use, so ``import esi.evaluation`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esi.evaluation.benchmarks import Benchmark, load_benchmark
    from esi.evaluation.run import EvaluationResult, evaluate

__all__ = ["Benchmark", "EvaluationResult", "evaluate", "load_benchmark"]

_WHERE = {
    "Benchmark": "esi.evaluation.benchmarks",
    "load_benchmark": "esi.evaluation.benchmarks",
    "EvaluationResult": "esi.evaluation.run",
    "evaluate": "esi.evaluation.run",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'esi.evaluation' has no attribute {name!r}")
