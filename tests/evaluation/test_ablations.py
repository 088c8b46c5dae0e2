"""Ablation runner: names, per-ablation configs, plain captions, summary table (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esi.errors import ConfigError
from esi.train.ablations import ABLATIONS, ablation_config, ablation_table, parse_ablations, plain_captions
from esi.train.config import PretrainConfig


def test_parse() -> None:
    assert [a.name for a in parse_ablations("full,no_cqa")] == ["full", "no_cqa"]
    assert len(parse_ablations("all")) == len(ABLATIONS)
    with pytest.raises(ConfigError, match="unknown ablation"):
        parse_ablations("no_ecg")


def test_configs(tmp_path: Path, store_factory) -> None:
    rows = [
        {
            "record_id": f"ptbxl/{i}",
            "subject_id": str(i),
            "fold": i % 10 + 1,
            "age": 50.0 + i,
            "sex": "F",
            "labels": "{}",
            "conditions": json.dumps({"164889003": 1.0}),
        }
        for i in range(20)
    ]
    store = store_factory["write"](tmp_path / "s", np.zeros((20, 12, 100)), rows)
    base = PretrainConfig(model="esi_test", store=str(store), captions=str(tmp_path / "c.parquet"), epochs=1)
    cfg = ablation_config(base, ABLATIONS["no_caption_loss"], tmp_path / "a", 20)
    assert cfg.lambda_cap == 0.0 and cfg.lambda_con == 1.0 and cfg.out.endswith("pretrain")
    assert ablation_config(base, ABLATIONS["misaligned_50"], tmp_path / "b", 20).shuffle_pairs == 0.5
    assert ablation_config(base, ABLATIONS["size_25"], tmp_path / "c", 20).limit == 5
    assert ablation_config(base, ABLATIONS["backbone_vit"], tmp_path / "d", 20).model == "esi_test_vit"
    plain = ablation_config(base, ABLATIONS["no_cqa"], tmp_path / "e", 20)
    caps = pd.read_parquet(plain.captions)
    assert caps["caption"].iat[0] == "atrial fibrillation. female, 50 years."
    with pytest.raises(ConfigError, match="no vit variant"):
        ablation_config(
            PretrainConfig(model="esi_cpu", store=str(store)), ABLATIONS["backbone_vit"], tmp_path, 20
        )
    assert plain_captions(store, tmp_path / "p.parquet").exists()


def test_table() -> None:
    table = ablation_table(
        {
            "full": {"description": "base", "model": "m", "metrics": {"zero_shot_macro_auc": 0.7}},
            "no_cqa": {"description": "plain", "model": "m", "metrics": {}},
        }
    )
    assert "| full | base | m | 0.700 |" in table and "| no_cqa | plain | m | - |" in table


def test_run_two_ablations_end_to_end(tmp_path: Path) -> None:
    from esi.data.prepare import prepare
    from esi.data.store import EcgStore
    from esi.data.synthetic import generate_dataset
    from esi.train.ablations import run_ablations

    generate_dataset(tmp_path / "synth", subjects=40, records_per_subject=2, seed=0, progress=False)
    prepare("ptbxl", tmp_path / "synth", tmp_path / "store", progress=False)
    m = EcgStore(tmp_path / "store").manifest
    pd.DataFrame({"record_id": m["record_id"], "caption": m["report"].astype(str)}).to_parquet(
        tmp_path / "captions.parquet"
    )
    base = PretrainConfig(
        model="esi_test",
        store=str(tmp_path / "store"),
        captions=str(tmp_path / "captions.parquet"),
        epochs=1,
        batch_size=16,
        max_steps=2,
        mlflow=False,
        folds=list(range(1, 9)),
        num_workers=0,
    )
    summary = run_ablations(
        base,
        parse_ablations("full,no_caption_loss"),
        benchmark="synthetic",
        root=tmp_path / "store",
        task="superdiagnostic",
        out=tmp_path / "abl",
        modes="zero-shot,identification",
        progress=False,
        log_mlflow=False,
        n_bootstrap=10,
    )
    assert set(summary) == {"full", "no_caption_loss"}
    assert all("zero_shot_macro_auc" in s["metrics"] for s in summary.values())
    assert (tmp_path / "abl" / "ablations.md").read_text().count("\n") == 4
    assert json.loads((tmp_path / "abl" / "ablations.json").read_text())["full"]["model"] == "esi_test"
