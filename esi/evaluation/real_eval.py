"""``esi evaluate --benchmark real``: zero-shot and cross-validated linear probe on the real evaluation part.

Zero-shot scores every evaluation record against each class's prompts (the ``caption`` scheme by default:
the text pretraining captions use for that condition). The linear probe is cross-validated over
:data:`esi.evaluation.real.CV_FOLDS` folds fixed by the data and stratified per class (:func:`stratified_folds`):
each fold is scored by a probe fitted on the others (C chosen on an inner fold), and the pooled out-of-fold
scores give one AUC per class. The same probe on a randomly
initialised encoder of the same architecture is the baseline the pretrained one must clearly beat.

Headline: the mean AUC over the headline conditions (AF, RBBB, LBBB, 1AVB) that have enough positives,
with a bootstrap 95% interval; the report lists every class with its positives, because on a set this
small one record moves an AUC by several points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esi.evaluation.metrics import macro_auc
from esi.evaluation.real import CV_FOLDS, HEADLINE, REAL_ROOT

log = logging.getLogger(__name__)

PROBE_C_GRID = (0.01, 0.1, 1.0)
PROBE_REPEATS = 3  # fold deals averaged: on ~185 records one deal alone moves the probe's headline by ~0.05


def _auc_block(y: np.ndarray, scores: np.ndarray, classes: Sequence[str], n_bootstrap: int, seed: int) -> dict:
    """Headline mean AUC (+CI), all-class mean AUC, per-class AUC with its own CI and positives.

    One set of bootstrap resamples (vectorised) serves every interval: each resample keeps both label values
    of every scored class, so the headline mean and the per-class intervals come from the same draws."""
    from esi.evaluation.metrics import bootstrap_auc_matrix

    every = macro_auc(y, scores, list(classes))
    scored = [i for i, c in enumerate(classes) if c in every.per_class]
    head = [i for i in scored if classes[i] in HEADLINE] or scored
    main = float(np.mean([every.per_class[classes[i]] for i in head]))
    ci, per_ci = [None, None], {}
    if n_bootstrap:
        matrix, _ = bootstrap_auc_matrix(y, scores, np.asarray(scored), n_bootstrap, seed)
        pos = {i: k for k, i in enumerate(scored)}
        ci = [float(v) for v in np.percentile(matrix[:, [pos[i] for i in head]].mean(axis=1), [2.5, 97.5])]
        per_ci = {classes[i]: [float(v) for v in np.percentile(matrix[:, pos[i]], [2.5, 97.5])] for i in scored}
    return {
        "macro_auc": main,
        "ci95": ci,
        "n_bootstrap": int(n_bootstrap),
        "headline_classes": [classes[i] for i in head],
        "all_classes_macro_auc": every.macro,
        "per_class_auc": every.per_class,
        "per_class_ci95": per_ci,
        "positives": {c: int(y[:, i].sum()) for i, c in enumerate(classes)},
        "skipped_classes": every.skipped,
        "_scores_test": scores,
    }


def stratified_folds(labels: np.ndarray, keys: Sequence[str], n_folds: int = CV_FOLDS, deal: int = 0
                     ) -> np.ndarray:
    """Folds 1..n_folds of one class, fixed by the data: subjects (``keys``) with a positive record and those
    without are each dealt round-robin in the order of the documented fold hash, so every fold holds its share
    of the positives (within one) and a subject's records share a fold. No seed enters; ``deal`` > 0 hashes
    ``"deal<N>:" + key`` instead, another fixed deal for repeated cross-validation.

    Why per class: out-of-fold scores of folds with other prevalences are not comparable (a fold whose
    training part has fewer positives gets a lower intercept), and on a set this small unstratified folds
    pooled that way measured a pretrained encoder's probe 0.10 below its stratified figure.
    """
    from esi.evaluation.benchmarks import fold_hash

    subjects, inverse = np.unique(np.asarray([str(k) for k in keys]), return_inverse=True)
    positive = np.zeros(len(subjects), bool)
    np.logical_or.at(positive, inverse, np.asarray(labels) > 0.5)
    order = fold_hash(subjects if deal == 0 else [f"deal{deal}:{k}" for k in subjects])
    fold_of = np.zeros(len(subjects), np.int64)
    for group in (np.flatnonzero(~positive), np.flatnonzero(positive)):
        ranked = group[np.argsort(order[group], kind="stable")]
        fold_of[ranked] = np.arange(len(ranked)) % n_folds + 1
    return fold_of[inverse]


def cross_validated_probe(x: np.ndarray, y: np.ndarray, keys: Sequence[str], *, n_folds: int = CV_FOLDS,
                          repeats: int = PROBE_REPEATS, seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """Out-of-fold probabilities, class by class over :func:`stratified_folds` of that class, averaged over
    ``repeats`` fixed deals: fold k is scored by a probe fitted on the other folds, with C chosen on an inner
    validation fold (the next fold number) and the probe then refit on all training folds with that C.

    Classes are independent, so they run in ``n_jobs`` worker processes (default: the settings' data-job
    workers, ``ESI_NUM_WORKERS``); the result does not depend on ``n_jobs``."""
    from joblib import Parallel, delayed

    if n_jobs is None:
        from esi.settings import get_settings

        n_jobs = max(1, get_settings().num_workers)
    n_jobs = min(n_jobs, y.shape[1]) or 1
    columns = Parallel(n_jobs=n_jobs)(
        delayed(_class_out_of_fold)(x, y[:, c], keys, n_folds, repeats, seed) for c in range(y.shape[1]))
    return np.stack(columns, axis=1) if columns else np.zeros(y.shape, np.float64)


def _class_out_of_fold(x: np.ndarray, labels: np.ndarray, keys: Sequence[str], n_folds: int, repeats: int,
                       seed: int) -> np.ndarray:
    """One class's out-of-fold probabilities, averaged over ``repeats`` fold deals."""
    out = np.zeros(len(labels), np.float64)
    for deal in range(repeats):
        out += _out_of_fold(x, labels[:, None], stratified_folds(labels, keys, n_folds, deal), seed)
    return out / max(repeats, 1)


def _summary(bench: Any) -> dict:
    """The benchmark summary with the probe's own fold rule: the plain hash folds of the Benchmark are not the
    folds the probe uses (those are stratified per class), so their sizes are not reported."""
    summary = bench.summary()
    summary.pop("fold_sizes", None)
    summary["fold_rule"] = (f"{CV_FOLDS} folds per class, subjects with and without a positive dealt in fold-hash "
                            f"order; {PROBE_REPEATS} deals averaged")
    return summary


def _out_of_fold(x: np.ndarray, col: np.ndarray, folds: np.ndarray, seed: int) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    from esi.evaluation.linear_probe import fit_probe, select_and_fit

    out = np.zeros(len(col), np.float64)
    fold_ids = sorted(set(int(f) for f in folds))
    for k in fold_ids:
        test = folds == k
        inner = fold_ids[(fold_ids.index(k) + 1) % len(fold_ids)]
        tr, va = ~test & (folds != inner), folds == inner
        chosen, _ = select_and_fit(x[tr], col[tr], x[va], col[va], c_grid=PROBE_C_GRID, seed=seed)
        with threadpool_limits(1):
            probe = fit_probe(x[~test], col[~test], C=chosen.C, seed=seed)
        out[test] = probe.decision(x[test])[:, 0]
    return out


def evaluate_real(
    model_ref: Any,
    root_or_store: str | Path | None = None,
    out: str | Path | None = None,
    *,
    modes: Sequence[str] = ("zero-shot", "linear-probe", "baselines"),
    prompt_scheme: str = "caption",
    score_rule: str = "contrast",
    kb_dir: str | Path | None = None,
    n_bootstrap: int = 1000,
    batch_size: int = 64,
    allow_contaminated: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    seed: int = 0,
    log_mlflow: bool = False,
) -> Any:
    """Score a model on the real benchmark's evaluation part; writes metrics.json and report.md to ``out``."""
    from esi.data.store import atomic_write_bytes, atomic_write_json
    from esi.evaluation.embed import EmbeddingCache, model_digest
    from esi.evaluation.provenance import check_contamination, pretraining_provenance
    from esi.evaluation.real import real_benchmark
    from esi.evaluation.run import EvaluationResult, _public, random_init_like, resolve_model, resolve_store
    from esi.evaluation.zeroshot import check_score_rule
    from esi.settings import get_settings

    check_score_rule(score_rule)  # before the store and the embeddings, not after them
    t0 = time.perf_counter()
    store = resolve_store("real", root_or_store or REAL_ROOT, progress=progress)
    bench = real_benchmark(store)
    model, info = resolve_model(model_ref, seed=seed)
    ids = store.manifest["record_id"].astype(str).to_numpy()[bench.indices]
    prov = pretraining_provenance(getattr(model, "checkpoint_extra", None), store)
    contamination = check_contamination(prov, ids, allow=allow_contaminated)
    info["digest"] = model_digest(model)
    out = Path(out) if out else get_settings().reports_dir / f"eval-real-{info['digest'][:8]}"
    out.mkdir(parents=True, exist_ok=True)
    cache = EmbeddingCache(cache_dir, enabled=use_cache)
    enc = {"batch_size": batch_size, "progress": progress}
    y, classes = bench.y.astype(np.int64), bench.class_names
    results: dict[str, Any] = {}
    if "zero-shot" in modes:
        emb = cache.get(model, store, bench.indices, kind="embedding", desc="real embedding", **enc)
        schemes = _scheme_scores(model, bench, emb, kb_dir)
        if prompt_scheme not in {k[0] for k in schemes} or score_rule not in {k[1] for k in schemes}:
            from esi.errors import EvaluationError

            raise EvaluationError(f"unknown prompt scheme {prompt_scheme!r} or score rule {score_rule!r}; choose "
                                  f"from {', '.join(sorted({k[0] for k in schemes}))} and "
                                  f"{', '.join(sorted({k[1] for k in schemes}))}")
        head = schemes[(prompt_scheme, score_rule)]
        block = _auc_block(y, head["_s"], classes, n_bootstrap, seed)
        block["prompt_scheme"], block["score_rule"] = prompt_scheme, score_rule
        block["prompts"], block["reference_prompts"] = head["prompts"], head["reference"]
        block["schemes"] = {k: {"macro_auc": _auc_block(y, v["_s"], classes, 0, seed)["macro_auc"]}
                            for (k, rule), v in schemes.items() if rule == score_rule}
        block["score_rules"] = {}
        for (k, rule), v in schemes.items():
            if k == prompt_scheme:
                b0 = _auc_block(y, v["_s"], classes, 0, seed)
                block["score_rules"][rule] = {"macro_auc": b0["macro_auc"], "per_class_auc": b0["per_class_auc"]}
        results["zero_shot"] = block
    probes = [("linear_probe", model)] if "linear-probe" in modes else []
    if "baselines" in modes:
        probes.append(("linear_probe_random_init", random_init_like(model, seed)))
    for key, m in probes:
        feats = cache.get(m, store, bench.indices, kind="features", desc=f"real features {key}", **enc)
        oof = cross_validated_probe(feats, y, bench.subjects, seed=seed)
        results[key] = {**_auc_block(y, oof, classes, n_bootstrap, seed), "cv_folds": CV_FOLDS,
                        "cv_repeats": PROBE_REPEATS}
    metrics = {
        "model": info,
        "benchmark": {**_summary(bench), "n_records": int(len(bench.indices)),
                      "dropped_headline": bench.dropped_classes},
        "contamination": contamination,
        "modes": results,
        "throughput": {"wall_s": time.perf_counter() - t0, "embeddings_per_s": cache.embeddings_per_s},
        "settings": {"n_bootstrap": n_bootstrap, "seed": seed, "modes": list(modes), "prompt_scheme": prompt_scheme,
                     "score_rule": score_rule, "allow_contaminated": allow_contaminated},
    }
    table = markdown(metrics)
    files = [out / "metrics.json", out / "report.md"]
    atomic_write_json(files[0], _public(metrics))
    atomic_write_bytes(files[1], table.encode())
    if log_mlflow:
        from esi.evaluation import report

        try:
            report.log_to_mlflow(_public(metrics), out, files)
        except Exception as exc:  # the report on disk stands; say why MLflow did not get it
            log.warning("MLflow logging failed (%s: %s); the report is in %s", type(exc).__name__, exc, out)
    log.info("real benchmark: %s", "; ".join(f"{k} {v['macro_auc']:.3f}" for k, v in results.items()))
    return EvaluationResult(metrics=_public(metrics), table=table, out=out, files=files)


def _scheme_scores(model: Any, bench: Any, emb: np.ndarray, kb_dir: Any) -> dict[tuple[str, str], dict]:
    """Zero-shot scores under each (prompt scheme, score rule) (the prompt and score-rule ablation)."""
    from esi.evaluation.prompts import SCHEMES, build_prompts
    from esi.evaluation.zeroshot import SCORE_RULES, class_embeddings, rule_scorer

    out = {}
    for name in SCHEMES:
        cp = build_prompts(bench, name, kb_dir=kb_dir)
        cemb = class_embeddings(model, cp.texts, cp.weights)
        for rule in SCORE_RULES:
            score = rule_scorer(model, bench, rule, name, kb_dir=kb_dir)
            out[(name, rule)] = {"_s": score(emb, cemb), "prompts": cp.texts, "reference": score.reference_texts}
    return out


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def markdown(metrics: dict) -> str:
    """The real benchmark's report: headline table, then one row per class with positives and CIs."""
    from esi.conditions.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    b, modes = metrics["benchmark"], metrics["modes"]
    lines = [f"# Real-ECG benchmark ({b['n_records']} evaluation records, never pretrained on)", "",
             f"Model: {metrics['model'].get('ref')} (digest {str(metrics['model'].get('digest'))[:12]}). "
             f"Contamination check: {metrics['contamination'].get('status')}, overlap "
             f"{metrics['contamination'].get('overlap')}.", "",
             "The set is small: intervals are wide, and one record moves a rare class's AUC by several points.",
             f"Linear probes: {CV_FOLDS}-fold cross-validation stratified per class, {PROBE_REPEATS} fixed fold deals "
             "averaged.", "",
             "| mode | mean AUC (AF, RBBB, LBBB, 1AVB) | 95% CI | mean AUC, all classes |", "|---|---|---|---|"]
    for key, m in modes.items():
        ci = m.get("ci95") or [None, None]
        lines.append(f"| {key} | {_fmt(m['macro_auc'])} | {_fmt(ci[0])}-{_fmt(ci[1])} | "
                     f"{_fmt(m.get('all_classes_macro_auc'))} |")
    if b.get("dropped_headline"):
        lines += ["", f"Headline classes with fewer than 3 positives (not scored): {', '.join(b['dropped_headline'])}."]
    keys = list(modes)
    lines += ["", "| condition | positives | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for c in b["classes"]:
        name = HEADLINE.get(c) or (vocab.get(c).abbreviation if vocab.get(c) else c)
        cells = []
        for k in keys:
            auc = modes[k]["per_class_auc"].get(c)
            ci = modes[k].get("per_class_ci95", {}).get(c)
            cells.append(_fmt(auc) + (f" ({_fmt(ci[0])}-{_fmt(ci[1])})" if ci else ""))
        lines.append(f"| {name} | {b['positives'][c]} | " + " | ".join(cells) + " |")
    zs = modes.get("zero_shot", {})
    if zs.get("schemes"):
        lines += ["", f"Zero-shot under each prompt scheme ({zs.get('score_rule', 'cosine')} rule, headline mean "
                  "AUC): " + ", ".join(f"{k} {_fmt(v['macro_auc'])}" for k, v in zs["schemes"].items())]
    if zs.get("score_rules"):
        lines += ["", f"Zero-shot under each score rule ({zs.get('prompt_scheme')} prompts, headline mean AUC): "
                  + ", ".join(f"{k} {_fmt(v['macro_auc'])}" for k, v in zs["score_rules"].items())
                  + ". contrast: similarity to the class minus similarity to a normal sinus-rhythm caption."]
    return "\n".join(lines) + "\n"
