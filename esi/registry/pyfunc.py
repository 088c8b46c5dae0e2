"""The ESI model as an MLflow pyfunc: weights, config and tokenizer files travel as artifacts.

Layout of the logged model (``artifacts/`` inside the MLflow model folder)::

    weights.pt                 the state dict only (torch.save), read back with torch.load(weights_only=True)
    config.json                the EsiModel config (esi/models/configs/*.json form)
    text/                      tokenizer and text-encoder config files (no hub id or mounted path needed)
    esi_model.json             digest, weights sha256, parameter count, input rate and length, provenance
    model_card.md              the model card
    reference_embeddings.npy   (optional) ECG embeddings of pretraining records, the reference for drift

``predict`` takes ECG arrays (n, 12, samples) at the model's rate and returns the L2-normalised embeddings (n, D),
exactly what ``EsiModel.encode_ecg`` returns in-process. No model object is ever pickled: the pyfunc is logged
as code (pyfunc_entry.py, MLflow's models-from-code).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from esi.errors import RegistryError

try:  # mlflow is a declared dependency; the guard keeps this module importable for documentation tools
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

WEIGHTS, CONFIG, TEXT, INFO, CARD, REFERENCE = (
    "weights.pt", "config.json", "text", "esi_model.json", "model_card.md", "reference_embeddings.npy")
ARTIFACT_KEYS = {"weights": WEIGHTS, "config": CONFIG, "text": TEXT, "info": INFO, "card": CARD,
                 "reference": REFERENCE}
PREDICT_BATCH = 64


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_length(config: dict[str, Any]) -> int:
    """Samples of the input example: the encoder's fixed length (ViT-1D), else one second at the model's rate."""
    ecg = config["ecg_cfg"]
    if str(ecg["encoder"]).startswith(("vit1d", "test_vit")):
        return int(ecg["seq_len"])
    return int(min(ecg["seq_len"], ecg["fs"]))


def write_artifacts(model: Any, text_assets: dict[str, Any], folder: Path, *, info: dict[str, Any],
                    card: str, reference: np.ndarray | None) -> dict[str, str]:
    """Write the model's artifacts into ``folder``; returns the ``artifacts`` mapping for log_model."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(model.config_dict(), indent=2, sort_keys=True) + "\n")
    text = folder / TEXT
    text.mkdir(exist_ok=True)
    for name, data in text_assets["files"].items():
        (text / Path(name).name).write_bytes(bytes(data.numpy().tobytes()))
    info = {**info, "weights_sha256": sha256_file(folder / WEIGHTS)}
    if reference is not None:
        np.save(folder / REFERENCE, np.asarray(reference, dtype=np.float32))
        info["reference_sha256"] = sha256_file(folder / REFERENCE)
    (folder / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (folder / CARD).write_text(card)
    return {key: str(folder / name) for key, name in ARTIFACT_KEYS.items() if (folder / name).exists()}


def build_model(weights: str | Path, config: str | Path, text_dir: str | Path, *, weights_sha256: str,
                digest: str | None, where: str) -> Any:
    """The EsiModel from its artifacts, after checking the weights file against the registered sha256.

    A file whose hash differs is never unpickled; the rebuilt model's digest (config + weights) must equal the
    registered one. ``where`` names the version in the error ('esi v3').
    """
    import torch

    from esi.evaluation.embed import model_digest
    from esi.models.checkpoint import load_state_strict
    from esi.models.coca import EsiModel

    fix = ("re-register the run (esi register --run RUN_DIR) or load another version (esi models list)")
    weights = Path(weights)
    if not weights.is_file():
        raise RegistryError(f"{where}: weights artifact {weights.name} is missing; {fix}")
    actual = sha256_file(weights)
    if actual != weights_sha256:
        raise RegistryError(f"{where}: weights artifact {weights.name} has sha256 {actual[:16]}..., the registry "
                            f"recorded {weights_sha256[:16]}...: the file is corrupt or was altered; {fix}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        cfg = json.loads(Path(config).read_text())
        files = {p.name: torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
                 for p in sorted(Path(text_dir).iterdir()) if p.is_file()}
        model = EsiModel(cfg, text_pretrained=False, text_assets={"files": files})
        load_state_strict(model, state, source=f"{where} weights")
    except RegistryError:
        raise
    except Exception as exc:  # unreadable weights, bad config or tokenizer files: name the version
        raise RegistryError(f"{where}: the model cannot be rebuilt from its artifacts "
                            f"({type(exc).__name__}: {exc}); {fix}") from exc
    if digest is not None and model_digest(model) != digest:
        raise RegistryError(f"{where}: the rebuilt model has digest {model_digest(model)}, the registry recorded "
                            f"{digest} (config.json or the tokenizer files were altered); {fix}")
    return model.eval()


class EsiPyfunc(PythonModel):
    """pyfunc wrapper: ECG (n, 12, samples) float32 -> normalised embeddings (n, D) float32."""

    def load_context(self, context: Any) -> None:
        cfg = context.model_config or {}
        art = context.artifacts
        self.model = build_model(art["weights"], art["config"], art["text"],
                                 weights_sha256=cfg["weights_sha256"], digest=cfg.get("digest"),
                                 where=f"ESI model {cfg.get('digest')}")

    # No type hints on predict: MLflow would derive (and enforce) a schema from them instead of the explicit
    # tensor signature (its "Add type hints" warning at import is expected).
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        batch = int((params or {}).get("batch_size", PREDICT_BATCH))
        return embed(self.model, model_input, batch_size=batch)


def embed(model: Any, x: Any, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """encode_ecg over a (n, 12, samples) array in batches, without gradients; returns float32 (n, D)."""
    import torch

    if isinstance(x, dict):  # a named-tensor request: the one array in it
        x = next(iter(x.values()))
    arr = np.asarray(x, dtype=np.float32)
    dev = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(arr), batch_size):
            out.append(model.encode_ecg(torch.from_numpy(arr[i:i + batch_size]).to(dev)).float().cpu().numpy())
    dim = int(model.config.embed_dim)
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def pip_requirements() -> list[str]:
    """Pinned third-party requirements of the pyfunc (given explicitly: no inference subprocess).

    The ``esi`` package itself must be importable where the model loads (the serving image installs it).
    """
    from importlib.metadata import version

    reqs = []
    for dist in ("torch", "transformers", "tokenizers", "numpy", "mlflow", "cloudpickle"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except Exception:  # pragma: no cover - an optional one missing from this environment
            continue
    return reqs


def log_esi_model(model: Any, text_assets: dict[str, Any], workdir: Path, *, info: dict[str, Any], card: str,
                  reference: np.ndarray | None = None, name: str = "model") -> tuple[Any, dict[str, Any]]:
    """Log ``model`` as an MLflow pyfunc in the active run; returns (MLflow's ModelInfo, esi_model.json).

    ``info`` (digest, provenance) is written to esi_model.json and the MLmodel metadata; the weights' sha256
    goes into the model config, so every load checks the file before reading it.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    artifacts = write_artifacts(model, text_assets, workdir, info=info, card=card, reference=reference)
    written = json.loads(Path(artifacts["info"]).read_text())
    config = model.config_dict()
    dim = int(config["embed_dim"])
    n_leads = int(config["ecg_cfg"]["in_chans"])
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_leads, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim))]))
    example = np.random.default_rng(0).normal(0, 0.1, (1, n_leads, input_length(config))).astype(np.float32)
    try:
        model_info = mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).with_name("pyfunc_entry.py")), artifacts=artifacts,
            signature=signature, input_example=example,
            pip_requirements=pip_requirements(),
            model_config={"weights_sha256": written["weights_sha256"], "digest": info.get("digest")},
            metadata={"esi": {k: v for k, v in written.items() if isinstance(v, str | int | float | bool)}},
        )
        return model_info, written
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
