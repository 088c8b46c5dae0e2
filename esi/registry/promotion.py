"""Gated promotion: an alias (``champion``) moves to a version only when every gate holds.

A gate is ``METRIC OP VALUE`` (``synthetic.superdiagnostic.zero_shot.macro_auc>=0.6``; OP one of >= > <= < ==).
A metric the version does not have fails its gate. ``compare="champion"`` (or ``"champion:M1,M2"``) also requires
the candidate not to be worse than the version the alias points at now, on the gate metrics (or on M1, M2):
higher is better except for the names in :data:`esi.registry.metrics.LOWER_IS_BETTER`. Every outcome is recorded
on the version as tags (``validation_status``, one ``gate.*`` tag per gate, who and when). Aliases only: MLflow
stages are deprecated and never used.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from esi.errors import PromotionRefused, RegistryError
from esi.registry.metrics import higher_is_better, metrics_from_tags
from esi.registry.tracking import ModelRef, client, get_version

log = logging.getLogger(__name__)

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
_GATE = re.compile(r"^\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>\S+)\s*$")
GATE_TAG = "gate."


@dataclass
class Promotion:
    """The outcome of :func:`promote`. ``passed=False`` is a refusal: the alias did not move."""

    name: str
    version: int
    to: str
    passed: bool
    gates: list[dict[str, Any]]  # metric, op, threshold, observed, passed, reason
    previous: int | None = None  # the version ``to`` pointed at before
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[dict[str, Any]]:
        return [g for g in self.gates if not g["passed"]]

    def summary(self) -> str:
        """One line per failing gate (or 'passed ...')."""
        if self.passed:
            return f"{self.name} v{self.version} -> @{self.to}: all {len(self.gates)} gate(s) passed"
        return "\n".join([f"{self.name} v{self.version} NOT promoted to @{self.to}; failing gate(s):"]
                         + [f"  {g['metric']} {g['op']} {g['threshold']}: {g['reason']}" if g["threshold"] is not None
                            else f"  {g['metric']}: {g['reason']}" for g in self.failing])

    def raise_if_refused(self) -> Promotion:
        """Raise PromotionRefused (listing the failing gates) when the promotion was refused."""
        if not self.passed:
            raise PromotionRefused(self.summary())
        return self


def parse_gate(text: str) -> dict[str, Any]:
    """'METRIC>=VALUE' -> {metric, op, threshold}; a malformed gate is a RegistryError with the syntax."""
    m = _GATE.match(text)
    value = None
    if m:
        try:
            value = float(m["value"])
        except ValueError:
            value = None
    if not m or value is None or math.isnan(value):
        raise RegistryError(f"gate {text!r} is not METRIC OP NUMBER (OP one of {', '.join(OPS)}), e.g. "
                            "'synthetic.superdiagnostic.zero_shot.macro_auc>=0.6'")
    return {"metric": m["metric"], "op": m["op"], "threshold": value}


def parse_compare(text: str) -> tuple[str, list[str] | None]:
    """'champion' -> ('champion', None: the gate metrics); 'champion:M1,M2' -> ('champion', [M1, M2])."""
    alias, _, names = text.partition(":")
    alias = alias.strip()
    if not alias:
        raise RegistryError(f"--compare {text!r}: expected ALIAS or ALIAS:METRIC[,METRIC...], e.g. champion")
    metrics = [n.strip() for n in names.split(",") if n.strip()] if names else None
    return alias, metrics


def _check(metric: str, op: str, threshold: float, observed: float | None, where: str,
           known: Sequence[str]) -> dict[str, Any]:
    gate = {"metric": metric, "op": op, "threshold": threshold, "observed": observed}
    if observed is None:
        hint = f"has {', '.join(sorted(known)[:8])}" + (" ..." if len(known) > 8 else "") if known else "has none"
        return {**gate, "passed": False, "reason": f"missing: {where} has no metric {metric!r} ({hint}); attach "
                f"the evaluation with 'esi register --run RUN_DIR --evaluation EVAL_DIR'"}
    if math.isnan(observed):
        return {**gate, "passed": False, "reason": f"observed NaN on {where}"}
    ok = OPS[op](observed, threshold)
    verb = "holds" if ok else "fails"
    return {**gate, "passed": ok, "reason": f"observed {observed:.4f}: {observed:.4f} {op} {threshold:g} {verb}"}


def _compare(mlc: Any, name: str, mv: Any, alias: str, metrics: list[str], observed: dict[str, float],
             notes: list[str]) -> list[dict[str, Any]]:
    aliases = dict(mlc.get_registered_model(name).aliases or {})
    target = aliases.get(alias)
    if target is None:
        notes.append(f"no @{alias} yet: the comparison passes")
        return [{"metric": f"compare:{alias}", "op": "not worse than", "threshold": None, "observed": None,
                 "passed": True, "reason": f"no @{alias} yet: nothing to compare with, passes"}]
    if str(target) == str(mv.version):
        notes.append(f"v{mv.version} already is @{alias}: the comparison passes")
        return [{"metric": f"compare:{alias}", "op": "not worse than", "threshold": None, "observed": None,
                 "passed": True, "reason": f"v{mv.version} is @{alias} already"}]
    other = mlc.get_model_version(name, str(target))
    theirs = metrics_from_tags(dict(other.tags or {}))
    out = []
    for metric in metrics:
        op = ">=" if higher_is_better(metric) else "<="
        ref = theirs.get(metric)
        if ref is None:
            mine = observed.get(metric)
            out.append({"metric": metric, "op": f"{op} @{alias}", "threshold": None, "observed": mine,
                        "passed": mine is not None,
                        "reason": (f"@{alias} (v{target}) has no {metric}: nothing to compare with, passes"
                                   if mine is not None else f"missing on v{mv.version}")})
            continue
        gate = _check(metric, op, ref, observed.get(metric), f"{name} v{mv.version}", list(observed))
        gate["op"] = f"{op} @{alias}"
        gate["reason"] = gate["reason"].replace(f" {op} {ref:g} ", f" {op} {ref:.4f} (@{alias} = v{target}) ")
        out.append(gate)
    return out


def _who() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _record(mlc: Any, mv: Any, to: str, passed: bool, gates: list[dict[str, Any]]) -> None:
    """The outcome as version tags; gate tags of an earlier validation are replaced, not left beside them."""
    for key in list(mv.tags or {}):
        if key.startswith(GATE_TAG):
            mlc.delete_model_version_tag(mv.name, mv.version, key)
    tags = {"validation_status": "passed" if passed else "failed", "validation_target": to,
            "validated_by": _who(), "validated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "validation_gates": json.dumps(gates, default=str)[:4900]}
    for g in gates:
        tags[f"{GATE_TAG}{g['metric']}"] = (f"{'passed' if g['passed'] else 'failed'}: observed {g['observed']} "
                                            f"{g['op']} {g['threshold']} ({g['reason']})")[:4900]
    for key, value in tags.items():
        mlc.set_model_version_tag(mv.name, mv.version, key, value)


def promote(name: str = "esi", *, version: int | None = None, alias: str | None = "candidate",
            to: str = "champion", require: Sequence[str] | None = None, compare: str | None = None,
            tracking_uri: str | None = None) -> Promotion:
    """Move alias ``to`` onto ``version`` (or the version ``alias`` points at) if every gate holds.

    ``require``: gates ``METRIC OP VALUE`` (default: settings.promotion_gates; ``[]`` for none).
    ``compare``: ``ALIAS`` or ``ALIAS:M1,M2``: not worse than that alias's version (none yet: passes, noted).
    The result, pass or fail, is recorded on the version's tags. A refusal returns ``passed=False``.
    """
    from esi.settings import get_settings

    if version is None and not alias:
        raise RegistryError("promote: give a version (--version N) or an alias (--alias candidate)")
    if to == alias and version is None:
        raise RegistryError(f"promote: --to {to} is the alias being promoted; choose another target")
    mlc = client(tracking_uri)
    mv = get_version(mlc, ModelRef(name, version, None if version is not None else alias))
    where = f"{name} v{mv.version}"
    observed = metrics_from_tags(dict(mv.tags or {}))
    specs = list(get_settings().promotion_gates if require is None else require)
    gates = []
    for spec in specs:
        g = parse_gate(spec)
        gates.append(_check(g["metric"], g["op"], g["threshold"], observed.get(g["metric"]), where, list(observed)))
    notes: list[str] = []
    if compare:
        target, metrics = parse_compare(compare)
        metrics = metrics or [parse_gate(s)["metric"] for s in specs]
        if not metrics:
            raise RegistryError(f"--compare {compare}: no metrics to compare (no gates given); use "
                                f"--compare {target}:METRIC[,METRIC...]")
        gates += _compare(mlc, name, mv, target, metrics, observed, notes)
    if not gates:
        notes.append("no gates: promoted on the operator's word alone")
    passed = all(g["passed"] for g in gates)
    _record(mlc, mv, to, passed, gates)
    previous = dict(mlc.get_registered_model(name).aliases or {}).get(to)
    if passed:
        mlc.set_registered_model_alias(name, to, str(mv.version))
        log.info("%s -> @%s (was %s); %d gate(s) passed", where, to, f"v{previous}" if previous else "unset",
                 len(gates))
    else:
        log.warning("%s not promoted to @%s: %d of %d gate(s) failed", where, to,
                    sum(not g["passed"] for g in gates), len(gates))
    return Promotion(name=name, version=int(mv.version), to=to, passed=passed, gates=gates,
                     previous=int(previous) if previous is not None else None, notes=notes)
