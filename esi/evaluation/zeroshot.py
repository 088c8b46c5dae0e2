"""Zero-shot classification: class prompts -> text embeddings; score from cosine(ECG embedding, class embedding).

Two prompt schemes (:mod:`esi.evaluation.prompts`): ``caption`` (default: the pretraining caption text of
each member label, weighted by training frequency) and ``names`` (:func:`class_prompts`: class names,
statement descriptions, vocabulary and corpus criteria sentences). A class's prompt embeddings are averaged
(weighted) and re-normalised. F1 thresholds are chosen on the validation split only; the test split's labels
are used for nothing but the final metrics.

Two score rules: ``contrast`` (default) scores a class by how much closer the ECG is to the class than to a
reference text, the caption of a normal sinus-rhythm record (:func:`esi.evaluation.prompts.reference_prompts`);
it is the two-way softmax "this condition or a normal ECG" up to a monotone map, so each class is judged against
the same alternative rather than by a raw similarity that also carries how close a recording sits to every
caption. ``cosine`` is the plain similarity. Classes that contain the reference condition keep the plain cosine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from esi.errors import EvaluationError
from esi.evaluation.benchmarks import Benchmark
from esi.evaluation.metrics import best_f1_thresholds, f1_macro, macro_auc

log = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent.parent / "cqa" / "corpus"
CRITERIA_SECTIONS = ("Diagnostic criteria", "Waveform features")
SCORE_RULES = ("contrast", "cosine")
DEFAULT_SCORE_RULE = "contrast"


@lru_cache(maxsize=256)
def corpus_sentences(condition_id: str, corpus_dir: str | None = None) -> dict[str, list[str]]:
    """Bullet sentences of the corpus document of a condition, per section ({} when there is no document)."""
    path = Path(corpus_dir or CORPUS_DIR) / f"{condition_id.replace(':', '_')}.md"  # the corpus file naming
    if not path.exists():
        return {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        head = re.match(r"^##\s+(.+?)\s*$", line)
        if head:
            current = head.group(1)
            continue
        bullet = re.match(r"^\s*[-*]\s+(.+?)\s*$", line)
        if current and bullet:
            sections.setdefault(current, []).append(bullet.group(1))
    return sections


def _condition_ids(code: str, text: str | None, label_system: str) -> list[str]:
    """Condition ids a raw label maps to: harmonisation first, then vocabulary look-ups of code and text."""
    from esi.conditions.harmonize import harmonize
    from esi.conditions.vocabulary import load_vocabulary

    system = label_system if label_system in ("scp", "snomed", "icbeb") else "scp"
    ids = list(harmonize(system, {code: 100.0}).conditions)  # an unknown code comes back unmapped, no error
    if ids:
        return ids
    vocab = load_vocabulary()
    if code in vocab:
        return [code]
    for cand in (vocab.by_abbreviation(code), vocab.lookup(code), vocab.lookup(text) if text else None):
        if cand is not None:
            return [cand.condition_id]
    return []


def class_prompts(
    bench: Benchmark,
    *,
    max_descriptions: int = 4,
    max_criteria: int = 2,
    knowledge_base: Any | None = None,
    corpus_dir: str | Path | None = None,
) -> dict[str, list[str]]:
    """The ``names`` scheme: its name, 'ECG showing <name>', member descriptions, criteria sentences.

    ``knowledge_base`` (optional, anything with ``query(text, k)`` returning passages or (passage, score)
    pairs) adds one retrieved passage per class.
    """
    prompts: dict[str, list[str]] = {}
    members = bench.class_members
    for cls in bench.class_names:
        texts = bench.class_texts.get(cls) or [cls]
        name = texts[0]
        if "ecg" in name.lower():  # 'normal ECG': 'ECG showing normal ECG' would only add noise
            out = [name, f"12-lead {name}"]
        else:
            out = [name, f"ECG showing {name}", f"12-lead electrocardiogram with {name}"]
        out += [f"ECG showing {d}" for d in texts[1 : 1 + max_descriptions]]
        criteria: list[str] = []
        ids: list[str] = []
        for code in members.get(cls, [cls]):
            ids += [i for i in _condition_ids(code, None, bench.label_system) if i not in ids]
        if not ids:  # e.g. an aggregated class: try its readable name
            ids = _condition_ids(cls, name, bench.label_system)
        for cid in ids:
            sec = corpus_sentences(cid, str(corpus_dir) if corpus_dir else None)
            criteria += [sec[s][0] for s in CRITERIA_SECTIONS if sec.get(s)]
            if len(criteria) >= max_criteria:
                break
        out += criteria[:max_criteria]
        if knowledge_base is not None:
            try:
                hits = knowledge_base.query(f"ECG findings of {name}", 1)
                for hit in hits[:1]:
                    text = hit[0] if isinstance(hit, tuple) else getattr(hit, "page_content", hit)
                    out.append(str(text)[:300])
            except Exception as exc:  # the KB is optional; prompts stand without it
                log.warning(
                    "knowledge-base query for %s failed (%s); using vocabulary prompts only", cls, exc
                )
        seen: set[str] = set()
        prompts[cls] = [p for p in out if p and not (p.lower() in seen or seen.add(p.lower()))]
    return prompts


def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised text embeddings with the model's text tower."""
    import torch

    out = []
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tok = model.tokenize(list(texts[start : start + batch_size]))
            z = model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
            out.append(z.float().cpu().numpy())
    if was_training:
        model.train()
    z = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def class_embeddings(
    model: Any, prompts: dict[str, list[str]], weights: dict[str, Sequence[float]] | None = None
) -> np.ndarray:
    """(C, D): the (weighted) mean of each class's prompt embeddings, re-normalised."""
    flat = [p for ps in prompts.values() for p in ps]
    if not flat:
        raise EvaluationError("no prompts to embed")
    z = embed_texts(model, flat)
    rows, k = [], 0
    for cls, ps in prompts.items():
        w = np.asarray(weights[cls] if weights else np.ones(len(ps)), np.float64)
        m = (z[k : k + len(ps)] * (w / max(float(w.sum()), 1e-12))[:, None]).sum(0)
        rows.append(m / max(float(np.linalg.norm(m)), 1e-12))
        k += len(ps)
    return np.stack(rows)


def scores(ecg_embeddings: np.ndarray, class_emb: np.ndarray, reference: np.ndarray | None = None,
           plain: Sequence[bool] | None = None) -> np.ndarray:
    """Cosine similarity of (normalised) ECG embeddings with the class embeddings; with a ``reference``
    embedding (D,), minus the similarity with it (the ``contrast`` rule), except for the ``plain`` classes."""
    e = ecg_embeddings / np.maximum(np.linalg.norm(ecg_embeddings, axis=1, keepdims=True), 1e-12)
    s = e @ class_emb.T
    if reference is None:
        return s
    out = s - (e @ np.asarray(reference, s.dtype))[:, None]
    if plain is not None:
        keep = np.asarray(plain, bool)
        out[:, keep] = s[:, keep]
    return out


@dataclass
class ScoreRule:
    """A zero-shot score rule, ready to apply: ``rule(ecg_embeddings, class_embeddings) -> scores``."""

    name: str
    reference: np.ndarray | None = None  # (D,) reference embedding of the contrast rule
    plain: list[bool] | None = None  # classes scored by plain cosine
    reference_texts: list[str] = field(default_factory=list)

    def __call__(self, ecg_embeddings: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
        return scores(ecg_embeddings, class_emb, self.reference, self.plain)


def check_score_rule(rule: str) -> str:
    """``rule`` if it is a score rule, else EvaluationError (called before any embedding work)."""
    if rule not in SCORE_RULES:
        raise EvaluationError(f"unknown zero-shot score rule {rule!r}; choose one of {', '.join(SCORE_RULES)} "
                              "(--score-rule)")
    return rule


def rule_scorer(model: Any, bench: Benchmark, rule: str, scheme: str, *, kb_dir: str | Path | None = None,
                knowledge_base: Any | None = None) -> ScoreRule:
    """Score ``rule`` for ``bench`` with the reference in the words of prompt ``scheme``."""
    if check_score_rule(rule) == "cosine":
        return ScoreRule("cosine")
    from esi.evaluation.prompts import reference_classes, reference_prompts

    texts = reference_prompts(scheme if scheme in ("caption", "names") else "names", kb_dir=kb_dir,
                              knowledge_base=knowledge_base)
    return ScoreRule(rule, class_embeddings(model, {"reference": texts})[0], reference_classes(bench), texts)


def evaluate_scores(
    class_names: list[str],
    scores_val: np.ndarray,
    y_val: np.ndarray,
    scores_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Macro AUC (+CI) on test and F1-macro with per-class thresholds fitted on validation only."""
    thresholds = best_f1_thresholds(y_val, scores_val)
    auc = macro_auc(y_test, scores_test, class_names, n_bootstrap=n_bootstrap, seed=seed)
    return {
        **auc.to_dict(),
        "f1_macro": f1_macro(y_test, scores_test, thresholds),
        "f1_macro_val": f1_macro(y_val, scores_val, thresholds),
        "thresholds": {c: float(t) for c, t in zip(class_names, thresholds, strict=True)},
    }


def zero_shot(
    model: Any,
    bench: Benchmark,
    emb_val: np.ndarray,
    emb_test: np.ndarray,
    *,
    prompts: dict[str, list[str]] | None = None,
    scheme: str = "caption",
    compare: Sequence[str] = ("caption", "names"),
    score_rule: str = DEFAULT_SCORE_RULE,
    n_bootstrap: int = 1000,
    seed: int = 0,
    knowledge_base: Any | None = None,
    kb_dir: str | Path | None = None,
) -> dict:
    """Zero-shot evaluation from the validation and test ECG embeddings.

    The headline result uses prompt ``scheme`` (see :mod:`esi.evaluation.prompts`; explicit ``prompts``
    override it); every scheme in ``compare`` is also scored, into ``schemes`` (the prompt ablation), and the
    headline scheme under every score rule, into ``score_rules``.
    """
    from esi.evaluation.prompts import ClassPrompts, build_prompts

    _, y_val = bench.split("val")
    _, y_test = bench.split("test")
    built: dict[str, ClassPrompts] = {}
    for name in dict.fromkeys([scheme, *compare]):
        if prompts is not None and name == scheme:
            built[name] = ClassPrompts("given", prompts, {c: [1.0 / len(p)] * len(p) for c, p in prompts.items()})
        else:
            built[name] = build_prompts(bench, name, kb_dir=kb_dir, knowledge_base=knowledge_base)
    kb = {"kb_dir": kb_dir, "knowledge_base": knowledge_base}
    results: dict[str, dict] = {}
    rules: dict[str, dict] = {}
    for name, cp in built.items():
        cemb = class_embeddings(model, cp.texts, cp.weights)
        for rule in dict.fromkeys([score_rule, *SCORE_RULES]) if name == scheme else [score_rule]:
            score = rule_scorer(model, bench, rule, name, **kb)
            s_val, s_test = score(emb_val, cemb), score(emb_test, cemb)
            r = evaluate_scores(bench.class_names, s_val, y_val, s_test, y_test,
                                n_bootstrap=n_bootstrap if rule == score_rule else 0, seed=seed)
            r["_scores_test"] = s_test
            r["prompt_source"] = cp.source
            if rule == score_rule:
                results[name] = r
            if name == scheme:
                rules[rule] = {k: r[k] for k in ("macro_auc", "f1_macro", "per_class_auc")}
    result = dict(results[scheme])
    result["prompt_scheme"] = built[scheme].scheme
    result["score_rule"] = score_rule
    result["score_rules"] = rules
    result["prompts"] = built[scheme].to_dict()["prompts"]
    result["schemes"] = {
        name: {k: r[k] for k in ("macro_auc", "ci95", "f1_macro", "per_class_auc", "skipped_classes", "prompt_source")}
        for name, r in results.items()
    }
    return result
