"""The whole pipeline in one process, on the embedded defaults: what ``make run`` executes.

Each stage is the same plain function a Kubeflow component wraps. Every stage resumes: the generator skips
records it already wrote, ``prepare`` skips finished shards, the knowledge base re-embeds only changed
chunks, captions come from the cache, pretraining resumes from its last checkpoint and evaluation reuses
cached embeddings. So re-running ``esi run`` after an interruption picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from esi.data.store import atomic_write_json
from esi.errors import ConfigError, ValidationFailed

log = logging.getLogger(__name__)

STAGES = ("synth", "prepare", "validate", "kb", "caption", "pretrain", "evaluate", "register", "promote", "bento",
          "score")
# Real recordings shipped with the source tree (tests/fixtures/real, see its PROVENANCE.md): `esi run` ends by
# scoring them, so a user sees the model on real ECGs and not only on the synthetic set it was trained on.
SAMPLE_RECORDS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real"


@dataclass
class RunConfig:
    """Options of a local end-to-end run (defaults sized for about ten minutes on two CPU cores)."""

    out: Path
    subjects: int = 120
    records_per_subject: int = 5
    seed: int = 0
    model: str = "esi_cpu"
    epochs: int = 3
    batch_size: int = 16
    # The ECG encoder's first 3 of 4 stages keep their initial weights: on the real benchmark this lifted the
    # linear probe from 0.601 to 0.697 (three seeds) at the same zero-shot AUC (docs/evaluation.md).
    freeze_ecg_stages: int = 3
    task: str = "superdiagnostic"
    modes: tuple[str, ...] = ("zero-shot", "linear-probe", "identification")
    stages: tuple[str, ...] = STAGES
    workers: int = 0
    gate: bool = True  # a failed critical validation stops the run before any caption or gradient
    model_name: str | None = None  # registered model name; default: the settings' registered_model_name
    gates: tuple[str, ...] | None = None  # promotion gates ("METRIC>=VALUE"); default: the settings' gates
    score_input: Path | None = None  # WFDB records to score at the end; default: the shipped real samples
    real_benchmark: bool = True  # prepare, caption and evaluate on the shipped real-ECG benchmark records
    # Pretrain on the real benchmark's pretraining part too (never on its evaluation part). Off by default: in
    # the make-run configuration it did not raise the real zero-shot AUC (docs/evaluation.md, the ablation).
    mix_real: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; known stages, in order: {', '.join(STAGES)}")


@dataclass
class RunResult:
    """Where each stage wrote its outputs, with timings."""

    out: str
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def _paths(out: Path) -> dict[str, Path]:
    return {"synth": out / "synthetic", "prepare": out / "store", "validate": out / "validation",
            "kb": out / "kb", "caption": out / "captions.parquet",
            "caption_cache": out / "caption_cache.sqlite",
            "pretrain": out / "pretrain", "evaluate": out / "evaluation", "score": out / "scores",
            "real_store": out / "real_store", "real_captions": out / "real_captions.parquet",
            "evaluate_real": out / "evaluation_real"}


def run_local(config: RunConfig, *, progress: bool = True,
              on_stage: Callable[[str, float, dict[str, Any]], None] | None = None) -> RunResult:
    """Run the selected stages in order; returns the output locations. Raises ValidationFailed at the gate."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    p = _paths(out)
    result = RunResult(out=str(out))
    state: dict[str, Any] = {}

    def stage(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name not in config.stages:
            return
        t0 = time.perf_counter()
        log.info("stage %s: start", name)
        notes = fn() or {}
        dt = time.perf_counter() - t0
        result.seconds[name] = round(dt, 2)
        result.notes[name] = notes
        log.info("stage %s: done in %.1f s", name, dt)
        atomic_write_json(out / "run.json", asdict(result))
        if on_stage:
            on_stage(name, dt, notes)

    def synth() -> dict[str, Any]:
        from esi.data.synthetic import generate_dataset

        s = generate_dataset(p["synth"], subjects=config.subjects,
                             records_per_subject=config.records_per_subject, seed=config.seed,
                             workers=config.workers, progress=progress)
        result.outputs["synthetic dataset (PTB-XL layout)"] = str(p["synth"])
        return {"records": s["records"], "subjects": s["subjects"]}

    def prepare_() -> dict[str, Any]:
        from esi.data.prepare import prepare
        from esi.data.summary import render_summary, summarize_store

        s = prepare("ptbxl", p["synth"], p["prepare"], workers=config.workers, progress=progress,
                    shard_size=500)
        if progress:
            render_summary(summarize_store(p["prepare"]))
        result.outputs["ECG store"] = str(p["prepare"])
        notes = {"records": s.windows_written, "rejected": s.rejected, "records_per_s": round(s.records_per_s, 1)}
        if config.real_benchmark:
            from esi.data.real_split import REAL_ROOT

            r = prepare("wfdb", REAL_ROOT, p["real_store"], workers=config.workers, progress=progress)
            result.outputs["real-ECG benchmark store"] = str(p["real_store"])
            notes["real_records"], notes["real_rejected"] = r.windows_written, r.rejected
        return notes

    def validate() -> dict[str, Any]:
        from esi.validation import validate_store

        report = validate_store(p["prepare"], p["validate"], progress=progress)
        result.outputs["validation report"] = str(p["validate"] / "report.html")
        notes = {"passed": report.passed, "quarantined": report.n_quarantined}
        if not report.passed and config.gate:
            atomic_write_json(out / "run.json", asdict(result))
            raise ValidationFailed(f"validation failed on {p['prepare']}: see "
                                   f"{p['validate'] / 'report.html'}; fix the data or re-run with --no-gate "
                                   "to continue anyway")
        return notes

    def kb() -> dict[str, Any]:
        from esi.cqa.knowledge_base import build_knowledge_base

        s = build_knowledge_base(kb_dir=p["kb"], progress=progress)
        result.outputs["knowledge base (Chroma)"] = str(p["kb"])
        return _plain(s)

    def caption() -> dict[str, Any]:
        from esi.cqa.captions import caption_store

        s = caption_store(p["prepare"], p["caption"], kb_dir=p["kb"], cache_path=p["caption_cache"],
                          progress=progress)
        result.outputs["captions"] = str(p["caption"])
        notes = _plain(s)
        if config.real_benchmark and p["real_store"].is_dir():
            r = caption_store(p["real_store"], p["real_captions"], kb_dir=p["kb"], cache_path=p["caption_cache"],
                              progress=progress)
            result.outputs["real-ECG captions"] = str(p["real_captions"])
            notes["real"] = _plain(r)
        return notes

    def pretrain_() -> dict[str, Any]:
        from esi.train.config import PretrainConfig
        from esi.train.loop import pretrain

        cfg = PretrainConfig(model=config.model, store=str(p["prepare"]), captions=str(p["caption"]),
                             out=str(p["pretrain"]), epochs=config.epochs, batch_size=config.batch_size,
                             warmup_epochs=min(1, config.epochs), decay_every=max(1, config.epochs),
                             lr=5e-4, seed=config.seed, resume=True,
                             freeze_ecg_stages=config.freeze_ecg_stages,
                             folds=list(range(1, 9)),  # folds 9-10 stay unseen for evaluation
                             mix=_real_mix(config, p))
        r = pretrain(cfg, progress=progress)
        state["checkpoint"] = str(r.final_checkpoint)
        result.outputs["pretrained model"] = str(r.final_checkpoint)
        result.outputs["training curves"] = str(Path(r.run_dir) / "loss.png")
        return {"mlflow_run_id": r.mlflow_run_id, "samples_per_s": round(float(r.samples_per_s), 1)}

    def evaluate_() -> dict[str, Any]:
        from esi.evaluation.run import evaluate

        checkpoint = state.get("checkpoint") or str(p["pretrain"] / "model.pt")
        r = evaluate(checkpoint, benchmark="synthetic", root_or_store=p["prepare"], task=config.task,
                     modes=list(config.modes), out=p["evaluate"], progress=progress, seed=config.seed,
                     kb_dir=p["kb"] if p["kb"].is_dir() else None)
        result.outputs["evaluation report"] = str(Path(r.out) / "report.md")
        result.outputs["evaluation metrics"] = str(Path(r.out) / "metrics.json")
        notes = {"metrics": r.headline(), "mlflow_run_id": r.mlflow_run_id}
        if config.real_benchmark and p["real_store"].is_dir():
            from esi.evaluation.real_eval import evaluate_real

            real = evaluate_real(checkpoint, p["real_store"], p["evaluate_real"], progress=progress,
                                 kb_dir=p["kb"] if p["kb"].is_dir() else None, seed=config.seed)
            result.outputs["real-ECG evaluation report"] = str(Path(real.out) / "report.md")
            notes["real"] = real.headline()
        return notes

    def register_() -> dict[str, Any]:
        from esi.registry import register_run

        evaluations = [e for e in (p["evaluate"], p["evaluate_real"]) if (e / "metrics.json").is_file()]
        reg = register_run(p["pretrain"], evaluations=evaluations, name=model_name)
        state["version"] = reg.version
        result.outputs["registered model"] = reg.model_uri
        result.outputs["model card"] = str(reg.card_path)
        return {"version": reg.version, "created": reg.created, "digest": reg.digest}

    def promote_() -> dict[str, Any]:
        from esi.registry import promote

        version = state.get("version")
        pr = promote(model_name, version=version, alias=None if version else "candidate", to="champion",
                     require=list(config.gates) if config.gates is not None else None)
        if pr.passed:
            result.outputs["champion"] = f"models:/{model_name}@champion"
        failing = [g for g in pr.gates if not g["passed"]]
        for g in failing:
            log.warning("promotion gate %s %s %s failed: observed %s", g["metric"], g["op"], g["threshold"],
                        g["observed"])
        return {"version": pr.version, "promoted": pr.passed, "failing_gates": len(failing)}

    def bento_() -> dict[str, Any]:
        from esi.serving.build import build_bento, serve_command

        uri = _served_uri(model_name, state)
        tag = build_bento(uri)
        state["bento"] = tag
        result.outputs["bento"] = tag
        result.outputs["serve it"] = serve_command(f"{tag.split(':')[0]}:latest")
        return {"bento": tag, "model": uri}

    def score_() -> dict[str, Any]:
        from esi.serving.score import score

        source = config.score_input or SAMPLE_RECORDS
        if not Path(source).is_dir():
            raise ConfigError(f"no records to score at {source}; pass RunConfig.score_input (esi run "
                              "--score-input DIR) or drop the score stage")
        s = score(source, p["score"], model=_served_uri(model_name, state), source="wfdb", progress=progress)
        result.outputs["scores of the real sample records"] = str(p["score"])
        return {"records": s.records, "rejected": s.rejects, "reject_reasons": s.reject_reasons,
                "model_version": s.model_version, "drift": s.drift, "seconds": round(float(s.seconds), 1)}

    model_name = config.model_name or _settings_model_name()
    for name, fn in (("synth", synth), ("prepare", prepare_), ("validate", validate), ("kb", kb),
                     ("caption", caption), ("pretrain", pretrain_), ("evaluate", evaluate_),
                     ("register", register_), ("promote", promote_), ("bento", bento_), ("score", score_)):
        stage(name, fn)
    result.outputs["run record"] = str(out / "run.json")
    atomic_write_json(out / "run.json", asdict(result))
    return result


def _real_mix(config: RunConfig, p: dict[str, Path]) -> list[dict[str, str]]:
    """The real benchmark's captioned store as a pretraining mix entry (its evaluation part is left out)."""
    if not (config.real_benchmark and config.mix_real and p["real_captions"].is_file()):
        return []
    return [{"store": str(p["real_store"]), "captions": str(p["real_captions"])}]


def _settings_model_name() -> str:
    from esi.settings import get_settings

    return get_settings().registered_model_name


def _served_uri(name: str, state: dict[str, Any]) -> str:
    """The champion when there is one; otherwise the version this run registered (a refused promotion still
    gets a bento and scores, labelled with that version, so the user can look at what failed the gates)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from esi.settings import get_settings

    client = MlflowClient(tracking_uri=get_settings().tracking_uri)
    try:
        client.get_model_version_by_alias(name, "champion")
        return f"models:/{name}@champion"
    except MlflowException as exc:
        # No such model (RESOURCE_DOES_NOT_EXIST) or no such alias (INVALID_PARAMETER_VALUE "... not found").
        if "not found" not in str(exc).lower():
            raise
    if state.get("version"):
        return f"models:/{name}/{state['version']}"
    return f"models:/{name}@candidate"


def _plain(obj: Any) -> dict[str, Any]:
    """A summary dataclass as a JSON-friendly dict."""
    try:
        d = asdict(obj)
    except TypeError:
        d = dict(obj) if isinstance(obj, dict) else {"value": str(obj)}
    return json.loads(json.dumps(d, default=str))


def parse_stages(text: str | None) -> tuple[str, ...]:
    """'synth,prepare' -> ('synth', 'prepare'); 'prepare-' -> every stage from prepare on; None -> all."""
    if not text:
        return STAGES
    text = text.strip()
    if text.endswith("-"):
        start = text[:-1]
        if start not in STAGES:
            raise ConfigError(f"unknown stage {start!r}; known: {', '.join(STAGES)}")
        return STAGES[STAGES.index(start):]
    return tuple(s.strip() for s in text.split(",") if s.strip())


def stage_names() -> Sequence[str]:
    return STAGES
