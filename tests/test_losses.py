"""Losses: InfoNCE (one process and gathered over 2 gloo ranks), captioning CE, CoCa weights, overfitting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from esi.losses import CaptionLoss, CoCaLoss, ContrastiveLoss


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on shared cores: threads only add contention
    yield
    torch.set_num_threads(before)


def _embeddings(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ecg = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    text = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    return ecg, text, torch.tensor(1 / 0.07)


class TestContrastive:
    def test_matches_a_direct_computation(self) -> None:
        ecg, text, scale = _embeddings(6, 8)
        loss, acc = ContrastiveLoss()(ecg, text, scale)
        logits = scale * ecg @ text.T
        expected = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
        assert torch.allclose(loss, expected)
        assert acc.item() == (logits.argmax(1) == torch.arange(6)).float().mean().item()

    def test_perfect_alignment_gives_low_loss_and_full_accuracy(self) -> None:
        ecg, _, scale = _embeddings(8, 16)
        loss, acc = ContrastiveLoss()(ecg, ecg.clone(), torch.tensor(100.0))
        assert acc.item() == 1.0 and loss.item() < 0.5
        shuffled, _ = ContrastiveLoss()(ecg, ecg.roll(1, dims=0), torch.tensor(100.0))
        assert shuffled > loss + 10


class TestCaption:
    def test_shifts_and_ignores_padding(self) -> None:
        torch.manual_seed(0)
        logits = torch.randn(2, 5, 11)
        ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
        mask = (ids != 0).long()
        loss = CaptionLoss()(logits, ids, mask)
        rows = [(0, 0, 5), (0, 1, 6), (0, 2, 3), (1, 0, 7), (1, 1, 3)]
        expected = torch.stack(
            [F.cross_entropy(logits[b, t][None], torch.tensor([y])) for b, t, y in rows]
        ).mean()
        assert torch.allclose(loss, expected)
        # Garbage in padded positions changes nothing.
        noisy = logits.clone()
        noisy[0, 3:] += 50 * torch.randn(2, 11)
        noisy[1, 2:] += 50 * torch.randn(3, 11)
        assert torch.allclose(CaptionLoss()(noisy, ids, mask), loss)
        assert torch.allclose(CaptionLoss(pad_token_id=0)(logits, ids, None), loss)

    def test_target_form_and_divisor(self) -> None:
        torch.manual_seed(0)
        logits = torch.randn(2, 5, 11)
        ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
        mask = (ids != 0).long()
        valid = mask[:, 1:].bool()
        dense = CaptionLoss()(logits, ids, mask)
        sparse = CaptionLoss().of_targets(logits[:, :-1][valid], ids[:, 1:][valid])
        assert torch.allclose(sparse, dense)
        # a divisor replaces the token count: summed CE / divisor (5 valid targets here)
        assert torch.allclose(CaptionLoss().of_targets(logits[:, :-1][valid], ids[:, 1:][valid], 2.5), 2 * dense)


class TestCoCa:
    def _outputs(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        ecg, text, scale = _embeddings(4, 8)
        ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0], [2, 8, 3, 0], [2, 9, 9, 3]])
        logits = torch.randn(4, 4, 12, requires_grad=True)
        return (
            {"ecg_embedding": ecg, "text_embedding": text, "logit_scale": scale, "caption_logits": logits},
            ids,
            (ids != 0).long(),
        )

    def test_weighted_sum(self) -> None:
        out, ids, mask = self._outputs()
        res = CoCaLoss(lambda_con=0.5, lambda_cap=2.0)(out, ids, mask)
        assert set(res) == {"loss", "contrastive", "caption", "accuracy"}
        assert torch.allclose(res["loss"], 0.5 * res["contrastive"] + 2.0 * res["caption"])
        assert res["loss"].requires_grad

    def test_zero_weights_skip_their_term(self) -> None:
        out, ids, mask = self._outputs()
        res = CoCaLoss(lambda_con=1.0, lambda_cap=0.0)(out, ids, mask)
        assert res["caption"].item() == 0.0 and res["loss"].item() == res["contrastive"].item()
        no_logits = {k: v for k, v in out.items() if k != "caption_logits"}
        CoCaLoss(lambda_cap=0.0)(no_logits, ids, mask)  # the decoder output is not needed
        only_cap = {"caption_logits": out["caption_logits"], "logit_scale": out["logit_scale"]}
        res = CoCaLoss(lambda_con=0.0)(only_cap, ids, mask)
        assert res["contrastive"].item() == 0.0 and res["loss"].item() == res["caption"].item()
        with pytest.raises(ValueError):
            CoCaLoss(lambda_con=0.0, lambda_cap=0.0)


# ------------------------------------------------------------ distributed: 2 gloo processes on this machine
WORLD, LOCAL_B, DIM = 2, 3, 8


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        ecg, text, _ = _embeddings(WORLD * LOCAL_B, DIM)
        sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        ecg = ecg[sl].clone().requires_grad_(True)
        text = text[sl].clone().requires_grad_(True)
        log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
        loss, acc = ContrastiveLoss()(ecg, text, log_scale.exp())  # rank/world read from torch.distributed
        loss.backward()
        torch.save(
            {
                "loss": loss.detach(),
                "acc": acc,
                "ecg_grad": ecg.grad,
                "text_grad": text.grad,
                "scale_grad": log_scale.grad,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.barrier()  # gloo aborts a peer still in a collective when the group is torn down under it
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_the_single_process_loss(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    ecg, text, _ = _embeddings(WORLD * LOCAL_B, DIM)
    ecg.requires_grad_(True)
    text.requires_grad_(True)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss, acc = ContrastiveLoss(rank=0, world_size=1)(ecg, text, log_scale.exp())
    loss.backward()

    # DDP averages over ranks: the mean of the rank losses and of their gradients is the global one.
    assert torch.allclose(torch.stack([r["loss"] for r in ranks]).mean(), loss, atol=1e-6)
    assert torch.allclose(torch.stack([r["acc"] for r in ranks]).mean(), acc)
    assert torch.allclose(torch.stack([r["scale_grad"] for r in ranks]).mean(), log_scale.grad, atol=1e-6)
    # all_gather's backward sums every rank's contribution into each input; DDP's 1/world_size averaging
    # then makes it the single-process gradient.
    got_ecg = torch.cat([r["ecg_grad"] for r in ranks]) / WORLD
    got_text = torch.cat([r["text_grad"] for r in ranks]) / WORLD
    assert torch.allclose(got_ecg, ecg.grad, atol=1e-6)
    assert torch.allclose(got_text, text.grad, atol=1e-6)
    # Without the rank offset of the labels each rank would only see its local batch: a different loss.
    local_only = (
        sum(
            ContrastiveLoss(0, 1)(ecg[s : s + LOCAL_B], text[s : s + LOCAL_B], log_scale.exp())[0]
            for s in range(0, WORLD * LOCAL_B, LOCAL_B)
        )
        / WORLD
    )
    assert not torch.allclose(local_only, loss, atol=1e-3)


# ------------------------------------------------------------------------------------- a tiny model overfits
def test_tiny_model_overfits_a_fixed_batch() -> None:
    from esi.models import create_model

    torch.manual_seed(0)
    model = create_model("esi_test", multimodal_cfg={"n_queries": 4})
    captions = [
        "sinus rhythm with normal axis",
        "atrial fibrillation with rapid ventricular response",
        "left bundle branch block with wide qrs",
        "inferior myocardial infarction with q waves",
    ]
    enc = model.tokenize(captions)
    ecg = torch.randn(4, 12, 640)
    loss_fn = CoCaLoss(pad_token_id=model.tokenizer.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(50):
        res = loss_fn(model(ecg, **enc), **enc)
        first = first or res["caption"].item()
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        res = loss_fn(model(ecg, **enc), **enc)
    assert res["accuracy"].item() == 1.0
    assert res["caption"].item() < first / 2
