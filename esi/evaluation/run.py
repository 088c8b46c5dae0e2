"""``evaluate(...)``: one call runs the chosen modes of a benchmark on a model and writes the report.

Model references: a checkpoint file or folder (``esi.models.checkpoint.load_model``), a registered model
(``models:/NAME@alias``, ``models:/NAME/3``: ``esi.registry.load_model``, digest-checked), an MLflow run artifact
(``runs:/RUN_ID/path``: downloaded, then loaded) or a config
name (a random initialisation: for baselines and tests). Data: a store, or a dataset folder that is prepared
into a cached store under ESI_HOME first.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.errors import DatasetNotFoundError, EvaluationError, ModelNotFoundError

log = logging.getLogger(__name__)

MODES = ("zero-shot", "linear-probe", "finetune", "identification", "baselines", "mmd")
DEFAULT_MODES = ("zero-shot", "linear-probe", "identification")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
SCRATCH_LRS = (3e-4, 1e-3, 3e-3)  # from-scratch baseline: encoder and head learning rate, chosen on validation


@dataclass
class EvaluationResult:
    """What an evaluation produced: the metrics dict, the Markdown table, the files and the MLflow run."""

    metrics: dict
    table: str
    out: Path
    files: list[Path] = field(default_factory=list)
    mlflow_run_id: str | None = None

    def headline(self) -> dict[str, float]:
        from esi.evaluation.report import flat_metrics

        return flat_metrics(self.metrics)


# --- model resolution -------------------------------------------------------------------------------------
def _find_checkpoint(folder: Path) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if not files:
        raise ModelNotFoundError(
            f"no checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)}) under {folder}; "
            "pass the checkpoint file itself"
        )
    preferred = [p for p in files if p.stem in ("model", "final", "checkpoint", "esi")]
    if len(files) > 1 and not preferred:
        log.warning("several checkpoint files under %s; using %s", folder, files[-1])
    return preferred[0] if preferred else files[-1]


def download_mlflow_model(uri: str, *, tracking_uri: str | None = None, dest: Path | None = None) -> Path:
    """Download the artifacts behind ``models:/...`` or ``runs:/...`` and return the checkpoint file."""
    import mlflow

    from esi.settings import get_settings

    settings = get_settings()
    mlflow.set_tracking_uri(tracking_uri or settings.tracking_uri)
    dest = dest or settings.home / "cache" / "models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    dest.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except Exception as exc:
        raise ModelNotFoundError(
            f"cannot resolve {uri!r} in MLflow at {mlflow.get_tracking_uri()} "
            f"({type(exc).__name__}: {exc}); check the name/alias with "
            "'mlflow models' or register the model first"
        ) from exc
    return local if local.is_file() else _find_checkpoint(local)


def resolve_model(ref: Any, *, seed: int = 0) -> tuple[Any, dict]:
    """Load a model from a checkpoint path, an MLflow URI or a config name; returns (model, info)."""
    import torch

    if not isinstance(ref, str | Path):
        return ref, {"ref": f"<in-memory {type(ref).__name__}>", "kind": "object"}
    text = str(ref)
    if text.startswith("models:/"):
        # The registry verifies the weights against the digest recorded on the version before loading them.
        from esi.registry import load_model as load_registered

        model = load_registered(text)
        reg = model.registry_info
        return model, {"ref": text, "kind": "registry", "checkpoint": reg.get("source_checkpoint"),
                       "registry": {k: reg.get(k) for k in ("name", "version", "alias", "digest", "run_id")}}
    if text.startswith("runs:/"):
        path = download_mlflow_model(text)
        from esi.models.checkpoint import load_model

        return load_model(path), {"ref": text, "kind": "mlflow", "checkpoint": str(path)}
    path = Path(text)
    if path.exists():
        ckpt = _find_checkpoint(path) if path.is_dir() else path
        from esi.models.checkpoint import load_model

        return load_model(ckpt), {"ref": text, "kind": "checkpoint", "checkpoint": str(ckpt)}
    from esi.models import create_model, list_models

    if text in list_models():
        torch.manual_seed(seed)
        log.warning("model %r is a config name: evaluating a RANDOM initialisation (seed %d)", text, seed)
        return create_model(text), {"ref": text, "kind": "random-init", "seed": seed}
    raise ModelNotFoundError(
        f"model {text!r} is not a checkpoint path, an MLflow URI (models:/NAME@alias, "
        f"runs:/RUN/path) or a model config ({', '.join(list_models())})"
    )


def random_init_like(model: Any, seed: int = 0) -> Any:
    """The same architecture with fresh random weights (the random-init and from-scratch baselines)."""
    import torch

    torch.manual_seed(seed)
    config = model.config_dict()
    try:
        fresh = type(model)(config, text_pretrained=False)
    except TypeError:
        fresh = type(model)(config)
    return fresh.to(next(model.parameters()).device)


# --- data resolution --------------------------------------------------------------------------------------
def _source_for(benchmark: str, root: Path) -> str:
    if benchmark in ("ptbxl", "synthetic"):
        return "ptbxl"
    if benchmark == "real":
        return "wfdb"  # tests/fixtures/real_benchmark: WFDB folders with #Dx codes or LUDB statements
    if benchmark == "icbeb":
        return "icbeb" if next(iter(root.rglob("REFERENCE.csv")), None) else "challenge"
    raise EvaluationError(
        f"benchmark {benchmark!r} needs a prepared store (--root STORE); create one with 'esi data prepare'"
    )


def resolve_store(benchmark: str, root_or_store: str | Path, *, progress: bool = True) -> Any:
    """Open a store, or prepare a dataset folder into a cached store under ESI_HOME first."""
    from esi.data.store import EcgStore

    root = Path(root_or_store)
    if not root.exists():
        raise DatasetNotFoundError(f"{root} does not exist; pass a store or a dataset folder with --root")
    if (root / "header.json").exists():
        return EcgStore(root)
    from esi.data.prepare import prepare
    from esi.settings import get_settings

    source = _source_for(benchmark, root)
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    out = get_settings().store_dir / "eval" / f"{source}-{root.name}-{key}"
    from esi.data.store import read_header

    # A corrupt header of the cached store is a StoreError naming the file (read_header), not a traceback.
    if not (out / "header.json").exists() or not read_header(out).get("complete"):
        log.info("preparing %s (%s) into the cached store %s", root, source, out)
        prepare(source, root, out, progress=progress)
    return EcgStore(out)


# --- the run ----------------------------------------------------------------------------------------------
def best_of_lr_grid(run: Any, base: Any, lrs: Sequence[float]) -> dict:
    """Fine-tune once per learning rate (encoder and head), keep the best validation macro AUC (ties: first)."""
    import dataclasses

    if not lrs:
        raise EvaluationError("the from-scratch learning-rate grid is empty; pass at least one value")
    tried: dict[str, float] = {}
    best: dict | None = None
    for lr in lrs:
        res = run(dataclasses.replace(base, lr_encoder=float(lr), lr_head=float(lr)), float(lr))
        tried[f"{lr:g}"] = res["best_val_macro_auc"]
        if best is None or res["best_val_macro_auc"] > best["best_val_macro_auc"]:
            best = {**res, "lr": float(lr)}
    assert best is not None
    best["val_auc_by_lr"] = tried
    return best


def _segment_fit(model: Any, store: Any, seconds: float) -> str:
    """'crop' when the encoder accepts a shorter input, else 'pad' (fixed-length encoders such as ViT-1D)."""
    import torch

    n = int(round(seconds * store.fs))
    try:
        with torch.no_grad():
            model.eval()
            model.encode_ecg(torch.zeros(1, len(store.leads), n, device=next(model.parameters()).device))
        return "crop"
    except Exception as exc:  # the model's own shape check: fall back on zero-padding to the full window
        log.info(
            "encoder does not take %g s inputs (%s); identification segments are zero-padded", seconds, exc
        )
        return "pad"


def _tick(timings: dict[str, float], key: str) -> None:
    """Start timing a mode (closed by the next _tick or by _close_timings)."""
    _close_timings(timings)
    timings[f"_start_{key}"] = time.perf_counter()


def _close_timings(timings: dict[str, float]) -> dict[str, float]:
    for k in [k for k in timings if k.startswith("_start_")]:
        timings[k[len("_start_"):]] = time.perf_counter() - timings.pop(k)
    return {k: round(v, 3) for k, v in timings.items()}


def _public(obj: Any) -> Any:
    """Drop private keys (arrays kept for plots) recursively, for the JSON file."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def parse_modes(modes: str | Sequence[str]) -> list[str]:
    """'zero-shot,linear-probe' -> ['zero-shot', 'linear-probe'] ('all' = every mode); validates names."""
    items = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip()]
    items = [m.replace("_", "-") for m in items]
    items = [
        {"fine-tune": "finetune", "zeroshot": "zero-shot", "linear": "linear-probe"}.get(m, m) for m in items
    ]
    if "all" in items:
        return list(MODES)
    bad = [m for m in items if m not in MODES]
    if bad or not items:
        raise EvaluationError(f"unknown mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    return list(dict.fromkeys(items))


def evaluate(
    model_ref: Any,
    benchmark: str = "ptbxl",
    root_or_store: str | Path | None = None,
    task: str | None = None,
    modes: str | Sequence[str] = DEFAULT_MODES,
    out: str | Path | None = None,
    *,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    c_grid: Sequence[float] | None = None,
    n_bootstrap: int = 1000,
    batch_size: int = 64,
    finetune_config: Any | None = None,
    identification_segment_s: float | None = None,
    identification_pairing: str = "auto",
    mmd_reference: str | Path | None = None,
    prompt_scheme: str = "caption",
    score_rule: str = "contrast",
    kb_dir: str | Path | None = None,
    allow_contaminated: bool = False,
    scratch_lrs: Sequence[float] = SCRATCH_LRS,
    log_mlflow: bool = True,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    seed: int = 0,
    plots: bool = True,
) -> EvaluationResult:
    """Run the benchmark ``modes`` on a model and write metrics.json, report.md and PNG plots to ``out``.

    Refuses (ContaminationError) when the test split overlaps the model's pretraining records
    (:mod:`esi.evaluation.provenance`), unless ``allow_contaminated``, which the report then prints.
    ``scratch_lrs``: the from-scratch baseline's learning rates, one chosen on validation.
    """
    from esi.evaluation.zeroshot import check_score_rule

    check_score_rule(score_rule)
    from esi.evaluation.benchmarks import load_benchmark
    from esi.evaluation.embed import EmbeddingCache, model_digest
    from esi.evaluation.finetune import FinetuneConfig, finetune
    from esi.evaluation.identification import SEGMENT_SECONDS, identification
    from esi.evaluation.linear_probe import linear_probe
    from esi.evaluation.metrics import mmd_rbf
    from esi.evaluation.provenance import check_contamination, pretraining_provenance
    from esi.evaluation.zeroshot import zero_shot
    from esi.settings import get_settings

    t0 = time.perf_counter()
    mode_list = parse_modes(modes)
    if root_or_store is None:
        raise EvaluationError("no data: pass --root (a store, or a dataset folder to prepare)")
    store = resolve_store(benchmark, root_or_store, progress=progress)
    bench = load_benchmark(benchmark, store, task, seed=seed)
    for split in ("train", "val", "test"):
        if not bench.mask(split).any():
            raise EvaluationError(
                f"{benchmark}/{bench.task}: the {split} split is empty (folds "
                f"{getattr(bench, split + '_folds')}); the store needs records in folds 1-10"
            )
    model, info = resolve_model(model_ref, seed=seed)
    prov = pretraining_provenance(getattr(model, "checkpoint_extra", None), store)
    test_ids = set(bench.record_ids(store, "test")) | set(
        store.manifest["record_id"].astype(str).to_numpy()[bench.pool_indices]
    )
    contamination = check_contamination(prov, test_ids, allow=allow_contaminated)
    info["digest"] = model_digest(model)
    info["config"] = model.config_dict() if hasattr(model, "config_dict") else {}
    out = (
        Path(out)
        if out
        else get_settings().reports_dir / f"eval-{benchmark}-{bench.task}-{info['digest'][:8]}"
    )
    out.mkdir(parents=True, exist_ok=True)
    cache = EmbeddingCache(cache_dir, enabled=use_cache)
    ft_cfg = finetune_config or FinetuneConfig(seed=seed)
    tr_idx, y_tr = bench.split("train")
    va_idx, y_va = bench.split("val")
    te_idx, y_te = bench.split("test")
    enc = {"batch_size": batch_size, "progress": progress}
    results: dict[str, Any] = {}
    timings: dict[str, float] = {"setup": time.perf_counter() - t0}

    def embeddings(m: Any, kind: str, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(
            cache.get(m, store, idx, kind=kind, desc=f"{tag} {kind} {name}", **enc)
            for name, idx in (("train", tr_idx), ("val", va_idx), ("test", te_idx))
        )

    if "zero-shot" in mode_list:
        _tick(timings, "zero_shot")
        e_va = cache.get(model, store, va_idx, kind="embedding", desc="embedding val", **enc)
        e_te = cache.get(model, store, te_idx, kind="embedding", desc="embedding test", **enc)
        results["zero_shot"] = zero_shot(
            model, bench, e_va, e_te, scheme=prompt_scheme, score_rule=score_rule, kb_dir=kb_dir,
            n_bootstrap=n_bootstrap, seed=seed
        )
    groups = bench.subjects[bench.mask("train")]
    lp_kw = {"fractions": fractions, "seeds": seeds, "n_bootstrap": n_bootstrap, "groups": groups}
    if c_grid:
        lp_kw["c_grid"] = tuple(c_grid)
    if "linear-probe" in mode_list:
        _tick(timings, "linear_probe")
        f_tr, f_va, f_te = embeddings(model, "features", "pretrained")
        results["linear_probe"] = linear_probe(f_tr, y_tr, f_va, y_va, f_te, y_te, bench.class_names, **lp_kw)

    def run_finetune(encoder_model: Any, label: str, cfg: Any = ft_cfg) -> dict:
        return finetune(encoder_model, store, (tr_idx, y_tr), (va_idx, y_va), (te_idx, y_te), bench.class_names,
                        config=cfg, n_bootstrap=n_bootstrap, progress=progress, label=label)

    if "finetune" in mode_list:
        _tick(timings, "finetune")
        results["finetune"] = run_finetune(model, "fine-tune")
    if "baselines" in mode_list:
        _tick(timings, "baselines")
        fresh = random_init_like(model, seed)
        r_tr, r_va, r_te = embeddings(fresh, "features", "random-init")
        results["linear_probe_random_init"] = linear_probe(
            r_tr, y_tr, r_va, y_va, r_te, y_te, bench.class_names, **lp_kw
        )
        results["supervised_scratch"] = best_of_lr_grid(
            lambda cfg, lr: run_finetune(fresh, f"from scratch lr {lr:g}", cfg), ft_cfg, scratch_lrs
        )
    if "identification" in mode_list:
        _tick(timings, "identification")
        seg = identification_segment_s or SEGMENT_SECONDS.get(benchmark, 5.0)
        # The candidate pool is the whole test split (every usable test-fold record), whatever --task is.
        results["identification"] = identification(
            cache,
            model,
            store,
            bench.pool_indices,
            bench.pool_subjects,
            benchmark=benchmark,
            segment_s=seg,
            mode=identification_pairing,
            fit=_segment_fit(model, store, seg),
            **enc,
        )
    if "mmd" in mode_list:
        _tick(timings, "mmd")
        if mmd_reference:
            ref_store = resolve_store(benchmark, mmd_reference, progress=progress)
            ref_idx, ref_name = ref_store.indices(), f"pretraining store {ref_store.path} (--mmd-reference)"
        elif prov.status == "known" and prov.store_indices is not None and len(prov.store_indices):
            from esi.data.store import EcgStore

            ref_store, ref_idx = EcgStore(prov.store), np.sort(prov.store_indices)
            ref_name = f"the pretraining set ({prov.source}: {prov.store}, folds {prov.folds or 'all'})"
        else:
            ref_store, ref_idx = store, tr_idx
            ref_name = "the training folds (the pretraining set is unknown: " + (prov.note or prov.status) + ")"
        ref = cache.get(model, ref_store, ref_idx, kind="embedding", desc="embedding reference", **enc)
        test_e = cache.get(model, store, te_idx, kind="embedding", desc="embedding test", **enc)
        results["mmd"] = {
            **mmd_rbf(ref, test_e, seed=seed),
            "reference": ref_name,
            "n_reference": int(len(ref)),
            "n_test": int(len(test_e)),
        }

    metrics = {
        "model": info,
        "benchmark": bench.summary(),
        "contamination": contamination,
        "modes": results,
        "timings_s": _close_timings(timings),
        "throughput": {
            "wall_s": time.perf_counter() - t0,
            "embeddings_per_s": cache.embeddings_per_s,
            "computed": int(cache.stats["computed"]),
            "cached": int(cache.stats["cached"]),
        },
        "settings": {
            "fractions": list(fractions),
            "seeds": list(seeds),
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "modes": mode_list,
            "prompt_scheme": prompt_scheme,
            "score_rule": score_rule,
            "scratch_lrs": list(scratch_lrs),
            "allow_contaminated": allow_contaminated,
        },
    }
    return write_report(metrics, bench, y_te, out, plots=plots, log_mlflow=log_mlflow)


def write_report(
    metrics: dict, bench: Any, y_test: np.ndarray, out: Path, *, plots: bool = True, log_mlflow: bool = True
) -> EvaluationResult:
    """metrics.json + report.md + plots in ``out``, then MLflow."""
    from esi.data.store import atomic_write_bytes, atomic_write_json
    from esi.evaluation import report

    modes = metrics["modes"]
    table = report.markdown_table(metrics)
    files = [out / "metrics.json", out / "report.md"]
    atomic_write_json(files[0], _public(metrics))
    atomic_write_bytes(files[1], table.encode())
    if plots:
        scores = {}
        per_class = {}
        for key in (
            "zero_shot",
            "linear_probe",
            "linear_probe_random_init",
            "finetune",
            "supervised_scratch",
        ):
            m = modes.get(key)
            if not m:
                continue
            main = m["fractions"][max(m["fractions"], key=float)]["runs"][0] if "fractions" in m else m
            scores[key] = main["_scores_test"]
            per_class[key] = main["per_class_auc"]
        for path in (
            report.plot_roc(y_test, scores, bench.class_names, out / "roc_curves.png"),
            report.plot_per_class(per_class, bench.class_names, out / "per_class_auc.png"),
            report.plot_label_fraction(modes, out / "label_fraction.png"),
        ):
            if path is not None:
                files.append(path)
    run_id = None
    if log_mlflow:
        try:
            run_id = report.log_to_mlflow(metrics, out, files)
        except Exception as exc:  # the report on disk stands; say why MLflow did not get it
            log.warning("MLflow logging failed (%s: %s); the report is in %s", type(exc).__name__, exc, out)
    return EvaluationResult(metrics=_public(metrics), table=table, out=out, files=files, mlflow_run_id=run_id)
