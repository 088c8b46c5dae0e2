"""Seconds to register an esi_cpu model (log + register + alias, with and without the drift reference) and to
load it back by alias (torch model, pyfunc, reference embeddings), on the SQLite store of a fresh ESI_HOME.

The "run" is an esi_cpu checkpoint (random weights: what is timed does not depend on them) whose pretraining
store holds ``--records`` synthetic 12 x 5000 records, so the reference embeddings (up to 512) are computed
for real. ``--inference`` also logs the same model once letting MLflow infer its requirements (what
``pip_requirements=None`` costs), the figure register avoids by passing them explicitly.

    python bench/registry.py                    # esi_cpu, 600 records, 2 threads
    python bench/registry.py --inference        # + the requirement-inference comparison
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def _store(path: Path, n: int) -> Path:
    import numpy as np

    from esi.data.store import write_store

    rng = np.random.default_rng(0)
    rows = [{"record_id": f"r{i:04d}", "source": "synthetic", "subject_id": f"s{i // 2}", "fold": 1 + i % 10}
            for i in range(n)]
    chunks = (rng.normal(0, 0.2, (min(200, n - k), 12, 5000)).astype(np.float32) for k in range(0, n, 200))
    return write_store(path, rows, chunks, shard_size=200)


def _run(work: Path, model_name: str, n: int) -> Path:
    import torch

    from esi.models import create_model
    from esi.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    store = _store(work / "store", n)
    model = create_model(model_name)
    cfg = {"store": str(store), "folds": list(range(1, 9)), "captions": None, "model": model_name}
    save_checkpoint(work / "run" / "model.pt", model, pretrain={"config": cfg, "step": 0, "epoch": 0,
                                                               "completed": True, "mlflow_run_id": None})
    return work / "run"


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="esi_cpu")
    ap.add_argument("--records", type=int, default=600, help="records in the pretraining store")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--inference", action="store_true", help="also time log_model with inferred requirements")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (ESI_HOME, run, store)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="esi-bench-registry-"))
    os.environ["ESI_HOME"] = str(work / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from esi.settings import get_settings

    get_settings.cache_clear()
    t0 = time.perf_counter()
    run = _run(work, args.model, args.records)
    setup_s = time.perf_counter() - t0
    import mlflow

    from esi.registry import load_model, load_reference, promote, register_run

    figures: dict[str, float] = {}
    _, figures["import_mlflow_and_first_store_s"] = _timed(lambda: mlflow.MlflowClient(get_settings().tracking_uri)
                                                           .search_experiments())
    reg, figures["register_with_reference_s"] = _timed(register_run, run, (), "esi-bench")
    reg0, figures["register_without_reference_s"] = _timed(register_run, run, (), "esi-bench-noref",
                                                           reference_records=0)
    _, figures["reregister_dedup_s"] = _timed(register_run, run, (), "esi-bench")
    promote("esi-bench", require=[])
    model, figures["load_model_by_alias_s"] = _timed(load_model, "models:/esi-bench@champion")
    pyfunc, figures["pyfunc_load_by_alias_s"] = _timed(mlflow.pyfunc.load_model, "models:/esi-bench@champion")
    x = np.random.default_rng(1).normal(0, 0.2, (8, 12, 5000)).astype(np.float32)
    out, figures["pyfunc_predict_8x5000_s"] = _timed(pyfunc.predict, x)
    ref, figures["load_reference_s"] = _timed(load_reference, "models:/esi-bench@champion")
    with torch.no_grad():
        same = bool(np.allclose(out, model.encode_ecg(torch.from_numpy(x)).numpy(), atol=1e-5))
    if args.inference:
        import esi.registry.pyfunc as pf

        pinned = pf.pip_requirements
        pf.pip_requirements = lambda: None  # let MLflow infer them (a subprocess that imports the model)
        try:
            _, figures["register_inferred_requirements_s"] = _timed(register_run, run, (), "esi-bench-infer",
                                                                    reference_records=0)
        finally:
            pf.pip_requirements = pinned
    weights = next((get_settings().home / "mlartifacts").rglob("weights.pt"))
    result = {
        "model": args.model, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "weights_mb": round(weights.stat().st_size / 2**20, 1), "reference": list(ref.shape),
        "records_in_store": args.records, "threads": args.threads, "setup_s": round(setup_s, 1),
        "versions": [reg.version, reg0.version], "pyfunc_equals_torch": same,
        **{k: round(v, 2) for k, v in figures.items()},
    }
    if args.inference:
        result["inference_over_explicit"] = round(figures["register_inferred_requirements_s"]
                                                  / figures["register_without_reference_s"], 1)
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
