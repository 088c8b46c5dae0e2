"""Every registered ECG encoder: token-map shapes, finite outputs, gradients; paper parameter counts."""

from __future__ import annotations

import pytest
import torch

from esi.errors import ModelNotFoundError
from esi.models.encoders import create_encoder, list_encoders

TEST_ENCODERS = list_encoders("test_")
FULL_ENCODERS = [n for n in list_encoders() if not n.startswith("test_")]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_paper_backbones() -> None:
    names = set(list_encoders())
    for size in ("atto", "femto", "pico", "nano", "tiny", "base", "large"):
        assert f"convnextv2_{size}" in names
    assert {"xresnet1d101", "vit1d_small", "vit1d_base", "test_convnext", "test_xresnet", "test_vit"} <= names


@pytest.mark.parametrize("name", TEST_ENCODERS)
def test_test_variant_token_map(name: str) -> None:
    torch.manual_seed(0)
    model = create_encoder(name)
    x = torch.randn(2, 12, 1000, requires_grad=True)
    tokens = model.forward_features(x)
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[2] == model.width
    assert 5 <= tokens.shape[1] < 1000  # a downsampled sequence, not one vector
    assert torch.isfinite(tokens).all()
    tokens.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # Samples do not mix: changing one ECG leaves the other's tokens unchanged.
    model.eval()
    y = x.detach().clone()
    y[1] += 1.0
    assert torch.allclose(
        model.forward_features(y)[0], model.eval().forward_features(x.detach())[0], atol=1e-5
    )


@pytest.mark.parametrize("name", FULL_ENCODERS)
def test_full_encoder_builds_with_a_width(name: str) -> None:
    with torch.device("meta"):
        model = create_encoder(name)
    assert isinstance(model.width, int) and model.width > 0
    assert n_params(model) > 1_000_000


@pytest.mark.parametrize(("name", "count"), [("convnextv2_tiny", 26_814_144), ("convnextv2_base", 85_558_528)])
def test_convnext_parameter_counts_are_exact(name: str, count: int) -> None:
    # The paper's 26.8M (ESI-tiny) and 85.6M (ESI) are the encoder as pretrained, without a classification head.
    with torch.device("meta"):
        backbone = create_encoder(name)
        with_head = create_encoder(name, num_classes=71)
    assert n_params(backbone) == count
    assert n_params(with_head) - count == 2 * backbone.width + backbone.width * 71 + 71  # LayerNorm + Linear


def test_esi_tiny_config_builds_the_paper_encoder() -> None:
    # The whole model from the esi_tiny config, nothing downloaded: text weights not loaded
    # (text_pretrained=False) and the offline MiniLM config instead of BioLinkBERT's hub id.
    from esi.models import create_model

    with torch.device("meta"):
        model = create_model("esi_tiny", text_pretrained=False, offline=True, text_cfg={"hf_model_name": "minilm"})
    assert n_params(model.ecg_encoder) == 26_814_144


def test_convnext_sizes_grow() -> None:
    sizes = ["atto", "femto", "pico", "nano", "tiny", "base", "large"]
    counts = []
    for size in sizes:
        with torch.device("meta"):
            counts.append(n_params(create_encoder(f"convnextv2_{size}")))
    assert counts == sorted(counts)


def test_convnext_downsamples_by_32_and_checkpointing_gives_equal_gradients() -> None:
    torch.manual_seed(0)
    model = create_encoder("test_convnext", drop_path_rate=0.0)
    x = torch.randn(2, 12, 640)
    out = model.forward_features(x)
    assert out.shape == (2, 20, model.width)
    out.square().mean().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model.forward_features(x).square().mean().backward()
    for a, p in zip(ref, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_vit_accepts_other_lengths() -> None:
    model = create_encoder("test_vit")
    assert model.forward_features(torch.randn(1, 12, 2500)).shape == (1, 25, model.width)


def test_unknown_encoder_lists_known_names() -> None:
    with pytest.raises(ModelNotFoundError, match="convnextv2_tiny"):
        create_encoder("convnext_huge")
