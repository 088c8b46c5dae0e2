"""The MLflow model registry of ESI: the pyfunc model, model card, registration, gated alias promotion, loading.

    register_run(run_dir, evaluations, name)  -> Registration   (log + register + tag + alias candidate)
    promote(name, version|alias, to, require, compare) -> Promotion  (gates; aliases only, no stages)
    load_model("models:/esi@champion")        -> the torch EsiModel, with model.registry_info
    load_reference("models:/esi@champion")    -> reference ECG embeddings (n, D) for drift, or None
    list_versions(name)                       -> versions with aliases, status, metrics, digest

Metric names: ``<benchmark>.<task>.<mode>.<metric>`` (see esi.registry.metrics). MLflow is imported when a
function is first used, so ``import esi.registry`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esi.registry.listing import list_versions
    from esi.registry.load import load_model, load_reference, model_card
    from esi.registry.promotion import Promotion, parse_gate, promote
    from esi.registry.register import Registration, register_run

__all__ = ["Promotion", "Registration", "list_versions", "load_model", "load_reference", "model_card",
           "parse_gate", "promote", "register_run"]

_WHERE = {
    "Registration": "esi.registry.register", "register_run": "esi.registry.register",
    "Promotion": "esi.registry.promotion", "promote": "esi.registry.promotion", "parse_gate": "esi.registry.promotion",
    "load_model": "esi.registry.load", "load_reference": "esi.registry.load", "model_card": "esi.registry.load",
    "list_versions": "esi.registry.listing",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'esi.registry' has no attribute {name!r}")
