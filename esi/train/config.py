"""The pretraining configuration: one dataclass, JSON in and out, validated with errors naming the field."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from esi.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
MISSING_CAPTIONS = ("error", "skip")
COMPILE_MODES = ("auto", "on", "off")  # torch.compile of the step (esi.train.compile)

# Fields that must not change when a run is resumed: they fix the model, the data order or the schedule.
RESUME_LOCKED = ("model", "model_overrides", "store", "captions", "batch_size", "grad_accum", "seed",
                 "shuffle_pairs", "warmup_epochs", "decay_every", "decay_factor", "lr", "weight_decay",
                 "limit", "folds", "augment", "text_max_length", "missing_captions", "length_buckets", "mix",
                 "freeze_ecg_stages")


@dataclass
class AugmentConfig:
    """Signal augmentations, drawn per record from a generator keyed by (seed, epoch, position).

    Keying the draws on the position (not on a worker's RNG) keeps them identical across worker counts and
    across an interrupted-then-resumed run. Amplitudes are in mV (store signals are mV); frequencies follow
    the store's sampling rate. The noise terms imitate what real recordings carry and the synthetic
    generator's records lack (respiration baseline wander, mains interference, muscle artefact, a lead
    that is off).
    """

    amplitude_scale: float = 0.1  # multiply the record by U(1 - a, 1 + a); 0 disables
    noise_std: float = 0.01  # additive Gaussian noise in mV; 0 disables
    max_shift: int = 0  # random time shift of up to +/- this many samples, zero-filled; 0 disables
    crop: int | None = None  # random crop to this many samples (shorter model input); None disables
    lead_scale: float = 0.0  # each lead further scaled by U(1 - s, 1 + s) (electrode placement); 0 disables
    baseline_wander: float = 0.0  # peak mV of a 0.05-0.5 Hz sinusoid (random per lead phase); 0 disables
    powerline: float = 0.0  # peak mV of 50 or 60 Hz mains interference (one of the two per record); 0 disables
    emg: float = 0.0  # std (mV) of band-limited (20-150 Hz) muscle noise in random bursts; 0 disables
    lead_dropout: float = 0.0  # probability that each lead is zeroed (never all twelve); 0 disables
    probability: float = 1.0  # share of records the noise terms (wander, powerline, emg, dropout) apply to

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """Every augmentation off (``esi pretrain --no-augment``)."""
        return cls(amplitude_scale=0.0, noise_std=0.0, max_shift=0, crop=None, lead_scale=0.0, baseline_wander=0.0,
                   powerline=0.0, emg=0.0, lead_dropout=0.0)

    def validate(self) -> None:
        if not 0 <= self.amplitude_scale < 1:
            raise ConfigError(f"augment.amplitude_scale={self.amplitude_scale}: expected 0 <= a < 1")
        if self.noise_std < 0:
            raise ConfigError(f"augment.noise_std={self.noise_std}: expected >= 0 (mV)")
        if self.max_shift < 0:
            raise ConfigError(f"augment.max_shift={self.max_shift}: expected >= 0 samples")
        if self.crop is not None and self.crop < 16:
            raise ConfigError(f"augment.crop={self.crop}: expected None or at least 16 samples")
        if not 0 <= self.lead_scale < 1:
            raise ConfigError(f"augment.lead_scale={self.lead_scale}: expected 0 <= s < 1")
        for name in ("baseline_wander", "powerline", "emg"):
            value = getattr(self, name)
            if not 0 <= value <= 5:
                raise ConfigError(f"augment.{name}={value}: expected 0 (off) to 5 mV")
        if not 0 <= self.lead_dropout < 1:
            raise ConfigError(f"augment.lead_dropout={self.lead_dropout}: expected a probability in [0, 1)")
        if not 0 <= self.probability <= 1:
            raise ConfigError(f"augment.probability={self.probability}: expected a probability in [0, 1]")


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs.

    Defaults follow the paper's recipe: AdamW 5e-5, 30 epochs, 5 warm-up epochs, x0.1 every 10 epochs,
    lambda_con = lambda_cap = 1, 48 records per device.
    """

    model: str = "esi_cpu"  # model config name (esi/models/configs/<name>.json)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # keyword overrides of create_model
    store: str | None = None  # store folder (esi data prepare)
    captions: str | None = None  # captions parquet (record_id, caption)
    # More (store, captions) pairs pretrained on together with `store`, e.g. the real benchmark's pretraining
    # part: [{"store": DIR, "captions": FILE}]. Records of the real benchmark's evaluation part are never used.
    mix: list[dict[str, str]] = field(default_factory=list)
    out: str | None = None  # run directory; default ESI_HOME/runs/pretrain-<time>
    epochs: int = 30
    warmup_epochs: float = 5.0  # linear warm-up, in epochs (converted to optimizer steps)
    lr: float = 5e-5
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    decay_every: float = 10.0  # multiply the lr by decay_factor every this many epochs (counted from step 0)
    decay_factor: float = 0.1
    batch_size: int = 48  # per device (per process)
    grad_accum: int = 1  # micro-batches per optimizer step
    grad_clip: float | None = 1.0  # max global grad norm; None or 0 disables
    lambda_con: float = 1.0
    lambda_cap: float = 1.0
    # The ECG encoder's first N stages, with their downsampling layers, keep their initial weights (0: all train).
    # Short CPU pretraining on synthetic records (make run: 3 of esi_cpu's 4) keeps the early, generic filters it
    # would otherwise bend towards the generator's signals; the paper's recipe trains everything.
    freeze_ecg_stages: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_pairs: float = 0.0  # fraction of ECG-text pairs misaligned on purpose (misalignment study)
    length_buckets: int = 0  # group batches by caption length over windows of this many batches (0: random)
    checkpoint_every_steps: int = 200  # also one at the end of every epoch; 0: epoch checkpoints only
    keep_checkpoints: int = 3  # most recent checkpoints kept in RUN_DIR/checkpoints
    num_workers: int | None = None  # DataLoader workers; None: ESI_NUM_WORKERS
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 (CUDA only) | fp32
    device: str = "auto"  # auto | cpu | cuda
    compile: str = "auto"  # torch.compile: auto (CUDA, or CPU runs long enough to pay back) | on | off
    max_steps: int | None = None  # stop after this many optimizer steps (a checkpoint is written there)
    limit: int | None = None  # only the first N usable records (smoke runs)
    folds: list[int] | None = None  # only these store folds (e.g. 1-8 to keep validation/test folds out)
    missing_captions: str = "error"  # records without a caption: error (default) | skip (logged count)
    text_max_length: int | None = None  # caption token length; None: the model's max_text_len
    max_nonfinite_steps: int = 10  # consecutive skipped (non-finite) steps before TrainingError
    log_every_steps: int = 10  # MLflow metric flush interval (every step is still recorded)
    mlflow: bool = True
    experiment: str | None = None  # MLflow experiment; None: ESI_MLFLOW_EXPERIMENT
    run_name: str | None = None
    resume: bool = False  # continue from the latest checkpoint in `out` (fresh start when there is none)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):  # PretrainConfig(augment={"noise_std": 0}) is accepted too
            known = {f.name for f in fields(AugmentConfig)}
            bad = sorted(set(self.augment) - known)
            if bad:
                raise ConfigError(f"unknown augment setting(s) {bad}; known: {sorted(known)}")
            self.augment = AugmentConfig(**self.augment)
        if isinstance(self.betas, list):
            self.betas = (float(self.betas[0]), float(self.betas[1])) if len(self.betas) == 2 else self.betas

    # --- validation -------------------------------------------------------------------------------------
    def validate(self) -> PretrainConfig:
        """Check every field; raise ConfigError naming the field and the accepted values."""
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ConfigError(f"pretrain config: {name}={getattr(self, name)!r}: expected {expected}")

        need(isinstance(self.model, str) and bool(self.model), "model", "a model config name, e.g. esi_cpu")
        need(isinstance(self.model_overrides, dict), "model_overrides", "a dict of create_model overrides")
        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.warmup_epochs >= 0, "warmup_epochs", ">= 0")
        need(self.lr > 0, "lr", "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two values in [0, 1)")
        need(self.eps > 0, "eps", "> 0")
        need(self.decay_every > 0, "decay_every", "> 0 epochs")
        need(0 < self.decay_factor <= 1, "decay_factor", "in (0, 1]")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(isinstance(self.grad_accum, int) and self.grad_accum >= 1, "grad_accum", "an integer >= 1")
        need(self.grad_clip is None or self.grad_clip >= 0, "grad_clip", "None, 0 (off) or > 0")
        need(self.lambda_con >= 0, "lambda_con", ">= 0")
        need(self.lambda_cap >= 0, "lambda_cap", ">= 0")
        need(self.lambda_con + self.lambda_cap > 0, "lambda_con", "lambda_con + lambda_cap > 0")
        need(isinstance(self.freeze_ecg_stages, int) and self.freeze_ecg_stages >= 0, "freeze_ecg_stages",
             "an integer >= 0 (0: train every stage)")
        need(0 <= self.shuffle_pairs <= 1, "shuffle_pairs", "a fraction in [0, 1]")
        need(isinstance(self.length_buckets, int) and self.length_buckets >= 0, "length_buckets",
             "an integer >= 0 (0: random batches)")
        need(self.checkpoint_every_steps >= 0, "checkpoint_every_steps", ">= 0 (0: epoch checkpoints only)")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1")
        need(self.num_workers is None or self.num_workers >= 0, "num_workers", "None or >= 0")
        need(self.precision in PRECISIONS, "precision", " | ".join(PRECISIONS))
        need(self.device in DEVICES, "device", " | ".join(DEVICES))
        need(self.compile in COMPILE_MODES, "compile", " | ".join(COMPILE_MODES))
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", "None or >= 1")
        need(self.limit is None or self.limit >= 1, "limit", "None or >= 1")
        need(self.folds is None or (isinstance(self.folds, list) and len(self.folds) > 0), "folds",
             "None or a non-empty list of fold numbers")
        need(self.missing_captions in MISSING_CAPTIONS, "missing_captions", " | ".join(MISSING_CAPTIONS))
        need(self.text_max_length is None or self.text_max_length >= 4, "text_max_length", "None or >= 4")
        need(self.max_nonfinite_steps >= 1, "max_nonfinite_steps", ">= 1")
        need(self.log_every_steps >= 1, "log_every_steps", ">= 1")
        need(isinstance(self.mix, list) and all(isinstance(m, dict) and m.get("store") and m.get("captions")
                                                 for m in self.mix), "mix",
             'a list of {"store": STORE, "captions": CAPTIONS} entries')
        self.augment.validate()
        return self

    def require_data(self) -> None:
        """The store and the captions are needed to train (not to build or print a config)."""
        if not self.store:
            raise ConfigError("pretrain config: store is not set; pass --store STORE (a folder made by "
                              "'esi data prepare')")
        if not self.captions:
            raise ConfigError("pretrain config: captions is not set; pass --captions CAPTIONS.parquet "
                              "(made by 'esi caption')")
        # fail before minutes of model loading, with the fix, when a path is wrong
        from esi.data.store import EcgStore
        from esi.errors import DatasetNotFoundError

        EcgStore(self.store)
        if not Path(self.captions).is_file():
            raise DatasetNotFoundError(f"captions table {self.captions} does not exist; create it with "
                                       f"'esi caption {self.store} --out {self.captions}'")
        for entry in self.mix:
            EcgStore(entry["store"])
            if not Path(entry["captions"]).is_file():
                raise DatasetNotFoundError(f"mix: captions table {entry['captions']} does not exist; create it "
                                           f"with 'esi caption {entry['store']} --out {entry['captions']}'")

    # --- (de)serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            from esi.data.store import atomic_write_bytes

            atomic_write_bytes(path, (text + "\n").encode())
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PretrainConfig:
        """Build from a dict; unknown keys are an error that lists the known ones."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object of pretrain settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown pretrain setting(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        aug = data.get("augment")
        if isinstance(aug, dict):
            aknown = {f.name for f in fields(AugmentConfig)}
            bad = sorted(set(aug) - aknown)
            if bad:
                raise ConfigError(f"{source}: unknown augment setting(s) {bad}; known: {sorted(aknown)}")
            data["augment"] = AugmentConfig(**aug)
        elif aug is not None and not isinstance(aug, AugmentConfig):
            raise ConfigError(f"{source}: augment must be an object, got {type(aug).__name__}")
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        try:
            cfg = cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        return cfg.validate()

    @classmethod
    def from_json(cls, path: str | Path) -> PretrainConfig:
        """Read a pretrain config JSON file (as written by :meth:`to_json` or RUN_DIR/config.json)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"pretrain config file {path} does not exist; pass a model name (esi_cpu) or a "
                              "JSON file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"pretrain config file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> PretrainConfig:
        """A validated copy with some fields changed (augment may be given as a dict of its fields)."""
        d = self.to_dict()
        aug = changes.pop("augment", None)
        if isinstance(aug, AugmentConfig):
            aug = asdict(aug)
        if aug:
            d["augment"] = {**d["augment"], **aug}
        d.update(changes)
        return PretrainConfig.from_dict(d)

    def locked_differences(self, other: PretrainConfig) -> list[str]:
        """Names of the fields that differ from ``other`` and may not change on resume."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in RESUME_LOCKED if a.get(k) != b.get(k)]
