"""Layers: channel LayerNorm semantics, GRN, DropPath, attentional pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from esi.models.layers import GRN, AttentionalPooler, ChannelLayerNorm, DropPath


class TestChannelLayerNorm:
    def test_normalises_over_channels_at_each_time_step(self) -> None:
        torch.manual_seed(0)
        x = torch.randn(2, 6, 50) * 3 + 1
        y = ChannelLayerNorm(6)(x)
        assert torch.allclose(y.mean(dim=1), torch.zeros(2, 50), atol=1e-5)
        assert torch.allclose(y.var(dim=1, unbiased=False), torch.ones(2, 50), atol=1e-3)
        expected = F.layer_norm(x.transpose(1, 2), (6,), eps=1e-6).transpose(1, 2)
        assert torch.allclose(y, expected, atol=1e-5)

    def test_differs_from_a_norm_over_time(self) -> None:
        # The authors' defect: F.layer_norm(x, (T,)) on (B, C, T) normalises each channel over time.
        torch.manual_seed(0)
        x = torch.randn(2, 6, 50) * 3 + 1
        over_time = F.layer_norm(x, (50,), eps=1e-6)
        y = ChannelLayerNorm(6)(x)
        assert not torch.allclose(y, over_time, atol=1e-2)
        assert not torch.allclose(y.mean(dim=2), torch.zeros(2, 6), atol=1e-2)

    def test_affine_parameters_act_per_channel(self) -> None:
        norm = ChannelLayerNorm(3)
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([1.0, 2.0, 0.0]))
            norm.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
        y = norm(torch.randn(1, 3, 10))
        assert torch.allclose(y[0, 2], torch.full((10,), 5.0))


class TestGRN:
    def test_starts_as_identity(self) -> None:
        x = torch.randn(2, 30, 8)
        assert torch.equal(GRN(8)(x), x)

    def test_response_depends_on_relative_channel_energy(self) -> None:
        grn = GRN(4)
        with torch.no_grad():
            grn.gamma.fill_(1.0)
        x = torch.ones(1, 10, 4)
        x[..., 0] = 3.0  # the loud channel is amplified relative to the quiet ones
        y = grn(x)
        gain = (y - x) / x
        assert gain[0, 0, 0] > gain[0, 0, 1]


def test_drop_path_is_identity_in_eval_and_drops_whole_samples_in_training() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 5)
    assert torch.equal(drop.eval()(x), x)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert bool(((per_sample == 0).all(dim=1) | (per_sample == 2).all(dim=1)).all())


def test_attentional_pooler_shapes_and_permutation_invariance() -> None:
    torch.manual_seed(0)
    pool = AttentionalPooler(dim=16, context_dim=24, n_queries=5, heads=4)
    tokens = torch.randn(3, 40, 24)
    out = pool(tokens)
    assert out.shape == (3, 5, 16)
    # Pooling attends over a set: reordering the tokens leaves the result unchanged.
    perm = torch.randperm(40)
    assert torch.allclose(pool(tokens[:, perm]), out, atol=1e-5)


def test_length_groups_split_only_when_it_saves_padding() -> None:
    from esi.models.layers import length_groups

    groups = length_groups(torch.tensor([100, 20, 95, 25, 30, 90]))
    assert [(sorted(r.tolist()), w) for r, w in groups] == [([0, 2, 5], 100), ([1, 3, 4], 30)]
    one = length_groups(torch.tensor([100, 98, 97, 99]))  # nearly equal lengths: not worth two passes
    assert len(one) == 1 and sorted(one[0][0].tolist()) == [0, 1, 2, 3] and one[0][1] == 100
