"""PretrainConfig: JSON round trip, validation errors that name the field, resume-locked fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from esi.errors import ConfigError
from esi.train.config import AugmentConfig, PretrainConfig


def test_defaults_follow_the_paper() -> None:
    c = PretrainConfig()
    assert (c.lr, c.epochs, c.warmup_epochs, c.decay_every, c.decay_factor) == (5e-5, 30, 5, 10, 0.1)
    assert (c.lambda_con, c.lambda_cap) == (1.0, 1.0)
    assert c.precision == "auto"


def test_json_round_trip(tmp_path: Path) -> None:
    c = PretrainConfig(model="esi_test", store="S", captions="C.parquet", epochs=3, folds=[1, 2],
                       model_overrides={"embed_dim": 16}, augment=AugmentConfig(noise_std=0.0, crop=500))
    path = tmp_path / "pretrain.json"
    c.to_json(path)
    back = PretrainConfig.from_json(path)
    assert back == c
    assert isinstance(back.augment, AugmentConfig) and back.augment.crop == 500


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 0), ("lr", -1.0), ("precision", "fp16"), ("shuffle_pairs", 1.5), ("batch_size", 0),
    ("device", "tpu"), ("missing_captions", "ignore"), ("decay_factor", 0.0), ("max_steps", 0),
])
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        PretrainConfig(**{field: value}).validate()


def test_both_loss_weights_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="lambda_con"):
        PretrainConfig(lambda_con=0.0, lambda_cap=0.0).validate()


def test_unknown_keys_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"epoch": 3}')
    with pytest.raises(ConfigError, match=r"unknown pretrain setting\(s\) \['epoch'\]"):
        PretrainConfig.from_json(path)
    path.write_text('{"augment": {"gain": 2}}')
    with pytest.raises(ConfigError, match="gain"):
        PretrainConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        PretrainConfig.from_json(path)


def test_missing_store_is_an_error_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="--store"):
        PretrainConfig().require_data()


def test_locked_differences() -> None:
    a = PretrainConfig(model="esi_test", batch_size=8)
    b = a.replace(epochs=5, max_steps=3, num_workers=2)
    assert a.locked_differences(b) == []
    c = a.replace(batch_size=4, augment={"noise_std": 0.5})
    assert set(a.locked_differences(c)) == {"batch_size", "augment"}
