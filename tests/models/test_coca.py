"""EsiModel: the API that training, evaluation and serving use; decoder causality; configs and factory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from esi.errors import ConfigError, DataError, ModelNotFoundError
from esi.models import EsiModel, create_model, list_models

T = 1000  # short ECGs keep the tests fast; the encoders accept any length
CAPTIONS = [
    "sinus rhythm with right bundle branch block and prolonged qrs duration",
    "atrial fibrillation with irregular rr intervals",
    "normal ecg",
]


@pytest.fixture(scope="module")
def model() -> EsiModel:
    torch.manual_seed(0)
    return create_model("esi_test").eval()


@pytest.fixture(scope="module")
def batch(model: EsiModel) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"ecg": torch.randn(3, 12, T), **model.tokenize(CAPTIONS)}


def test_forward_returns_the_contract(model: EsiModel, batch: dict[str, torch.Tensor]) -> None:
    out = model(**batch)
    assert set(out) == {"ecg_embedding", "text_embedding", "logit_scale", "caption_logits"}
    d = model.config.embed_dim
    assert out["ecg_embedding"].shape == (3, d) and out["text_embedding"].shape == (3, d)
    assert torch.allclose(out["ecg_embedding"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out["text_embedding"].norm(dim=-1), torch.ones(3), atol=1e-5)
    L = batch["input_ids"].shape[1]
    assert out["caption_logits"].shape == (3, L, model.text.vocab_size)
    assert out["logit_scale"].ndim == 0 and math.isclose(out["logit_scale"].item(), 1 / 0.07, rel_tol=1e-4)
    assert torch.allclose(model.encode_ecg(batch["ecg"]), out["ecg_embedding"], atol=1e-5)
    assert torch.allclose(
        model.encode_text(batch["input_ids"], batch["attention_mask"]), out["text_embedding"], atol=1e-5
    )
    assert model.ecg_features(batch["ecg"]).shape == (3, model.ecg_encoder.width)


def test_tokenize(model: EsiModel) -> None:
    enc = model.tokenize(["a much longer caption " * 40, "short"])
    assert set(enc) == {"input_ids", "attention_mask"}
    assert enc["input_ids"].shape[1] == model.max_text_len
    assert enc["attention_mask"][1].sum() < model.max_text_len
    assert enc["input_ids"][1, -1] == model.tokenizer.pad_token_id  # right padding
    assert model.tokenize(["a b c d e f"], max_length=4)["input_ids"].shape == (1, 4)


def test_decoder_is_causal(model: EsiModel, batch: dict[str, torch.Tensor]) -> None:
    ids = batch["input_ids"].clone()
    base = model(**{**batch, "input_ids": ids})["caption_logits"]
    for t in (1, 3, 6):
        changed = ids.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 7) % model.text.vocab_size
        logits = model(**{**batch, "input_ids": changed})["caption_logits"]
        assert torch.allclose(logits[:, : t + 1], base[:, : t + 1], atol=1e-5)  # positions <= t unchanged
        assert not torch.allclose(logits[:, t + 1], base[:, t + 1], atol=1e-5)  # the changed one does change


def test_decoder_never_reads_the_text_encoder(batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    m = create_model("esi_test").eval()
    before = m(**batch)
    with torch.no_grad():
        for p in m.text.parameters():
            p.add_(torch.randn_like(p))
    after = m(**batch)
    assert torch.equal(before["caption_logits"], after["caption_logits"])
    assert not torch.allclose(before["text_embedding"], after["text_embedding"])


def test_decoder_depends_on_the_ecg(model: EsiModel, batch: dict[str, torch.Tensor]) -> None:
    a = model(**batch)["caption_logits"]
    b = model(**{**batch, "ecg": batch["ecg"].flip(0)})["caption_logits"]
    assert not torch.allclose(a, b)


def test_logit_scale_init_and_clamp(batch: dict[str, torch.Tensor]) -> None:
    m = create_model("esi_test")
    assert math.isclose(m.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    scale = m(**batch)["logit_scale"]
    assert math.isclose(scale.item(), 100.0, rel_tol=1e-5)
    scale.backward()
    assert m.logit_scale.grad.item() == 0.0  # past the bound: no gradient, hence the in-place clamp_
    m.clamp_logit_scale_()
    assert m.logit_scale.item() == pytest.approx(math.log(100))
    m.zero_grad()
    m(**batch)["logit_scale"].backward()
    assert m.logit_scale.grad.item() > 0  # at the bound the gradient flows again
    with pytest.raises(ConfigError, match="init_logit_scale"):
        create_model("esi_test", init_logit_scale=1.0 + math.log(100))


@pytest.mark.parametrize("bound", [0.0, -1.0, 5.0, float("inf"), float("nan")])
def test_max_logit_scale_is_validated(bound: float) -> None:
    with pytest.raises(ConfigError, match="max_logit_scale"):
        create_model("esi_test", max_logit_scale=bound)


def test_init_above_a_lower_bound_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"init_logit_scale.*max_logit_scale = 2"):
        create_model("esi_test", max_logit_scale=2.0)  # init log(1/0.07) = 2.66 > 2
    assert create_model("esi_test", max_logit_scale=3.0, init_logit_scale=1.0).logit_scale.item() == 1.0


def test_valid_target_logits_equal_the_dense_ones(model: EsiModel, batch: dict[str, torch.Tensor]) -> None:
    from esi.losses import CoCaLoss

    dense = model(**batch)
    sparse = model(**batch, caption_targets_only=True)
    mask = batch["attention_mask"][:, 1:].bool()
    assert sparse["caption_logits"].shape == (int(mask.sum()), model.text.vocab_size)
    assert torch.equal(sparse["caption_targets"], batch["input_ids"][:, 1:][mask])
    assert torch.allclose(sparse["caption_logits"], dense["caption_logits"][:, :-1][mask], atol=1e-5)
    a, b = (CoCaLoss()(o, batch["input_ids"], batch["attention_mask"]) for o in (dense, sparse))
    assert torch.allclose(a["caption"], b["caption"], atol=1e-6)


def test_skipping_branches(model: EsiModel, batch: dict[str, torch.Tensor]) -> None:
    assert "caption_logits" not in model(**batch, caption=False)
    assert "ecg_embedding" not in model(**batch, contrastive=False)


def test_bad_inputs_are_data_errors(model: EsiModel, batch: dict[str, torch.Tensor]) -> None:
    with pytest.raises(DataError, match="12"):
        model.encode_ecg(torch.randn(2, 8, T))
    too_long = torch.ones(1, model.max_text_len + 1, dtype=torch.long)
    with pytest.raises(DataError, match="tokenize"):
        model.encode_text(too_long, torch.ones_like(too_long))


def test_generation_starts_at_bos_and_stops_at_sep(batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    m = create_model("esi_test")
    text = m.text
    seen: list[torch.Tensor] = []
    hidden = m.decoder.hidden
    m.decoder.hidden = lambda ids, pooled: (seen.append(ids.clone()), hidden(ids, pooled))[1]
    with torch.no_grad():  # "sinus" wins every position: generation runs to max_new_tokens
        m.decoder.output_bias.zero_()
        word = m.tokenizer.convert_tokens_to_ids("sinus")
        m.decoder.output_bias[word] = 1e4
    ids = m.generate_ids(batch["ecg"], max_new_tokens=10)
    assert torch.equal(seen[0], torch.full((3, 1), text.bos_token_id))  # decoding begins at [CLS]
    assert ids.shape == (3, 11) and (ids[:, 1:] == word).all()
    with torch.no_grad():
        m.decoder.output_bias[text.eos_token_id] = 2e4
    seen.clear()
    ids = m.generate_ids(batch["ecg"], max_new_tokens=10)
    assert ids.tolist() == [[text.bos_token_id, text.eos_token_id]] * 3 and len(seen) == 1  # stopped at [SEP]
    assert m.generate_caption(batch["ecg"]) == ["", "", ""]
    assert m.training  # generation restores the mode


def test_a_tiny_model_reproduces_a_memorised_caption() -> None:
    from esi.losses import CoCaLoss

    torch.manual_seed(0)
    m = create_model("esi_test")
    caption = "sinus rhythm with right bundle branch block"
    enc = m.tokenize([caption] * 2)
    ecg = torch.randn(2, 12, 640)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    loss_fn = CoCaLoss(lambda_con=0.0)
    for _ in range(60):
        loss = loss_fn(m(ecg, **enc, contrastive=False, caption_targets_only=True), **enc)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    expected = m.tokenizer.decode(enc["input_ids"][0], skip_special_tokens=True)
    assert m.generate_caption(ecg[:1]) == [expected]
    ids = m.generate_ids(ecg[:1])
    assert ids[0, -1] == m.text.eos_token_id and ids.shape[1] == int(enc["attention_mask"][0].sum())


@pytest.mark.parametrize("name", ["esi_test_vit", "esi_test_xresnet"])
def test_backbone_ablation_variants(name: str) -> None:
    torch.manual_seed(0)
    m = create_model(name)
    enc = m.tokenize(CAPTIONS[:2])
    out = m(torch.randn(2, 12, T if "xresnet" in name else 5000), **enc)
    assert out["ecg_embedding"].shape == (2, m.config.embed_dim)
    assert torch.isfinite(out["caption_logits"]).all()


class TestFactory:
    def test_list_models(self) -> None:
        names = set(list_models())
        assert {
            "esi_base",
            "esi_tiny",
            "esi_cpu",
            "esi_test",
            "esi_tiny_vit",
            "esi_tiny_xresnet",
            "esi_test_vit",
            "esi_test_xresnet",
        } <= names

    def test_shipped_configs_are_valid(self) -> None:
        from esi.models.config import config_from_dict
        from esi.models.encoders import list_encoders
        from esi.models.factory import load_config

        for name in list_models():
            cfg = config_from_dict(load_config(name))
            assert cfg.ecg_cfg.encoder in list_encoders()
            assert cfg.name == name

    def test_paper_configs(self) -> None:
        from esi.models.factory import load_config

        assert load_config("esi_base")["ecg_cfg"]["encoder"] == "convnextv2_base"
        assert load_config("esi_tiny")["ecg_cfg"]["encoder"] == "convnextv2_tiny"
        for name in ("esi_base", "esi_tiny"):
            assert load_config(name)["text_cfg"]["hf_model_name"] == "michiyasunaga/BioLinkBERT-base"

    def test_unknown_name_lists_known_names(self) -> None:
        with pytest.raises(ModelNotFoundError, match=r"esi_nope.*esi_base.*esi_test"):
            create_model("esi_nope")

    def test_overrides_deep_merge(self) -> None:
        m = create_model("esi_test", embed_dim=24, multimodal_cfg={"n_queries": 3})
        assert m.config.embed_dim == 24 and m.ecg_proj.out_features == 24
        assert m.caption_pooler.query.shape[0] == 3
        assert m.config.multimodal_cfg.width == 64  # untouched sibling keys survive the merge
        assert m.config_dict()["multimodal_cfg"]["n_queries"] == 3

    def test_unknown_field_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"ecg_cfg\.encodr.*encoder"):
            create_model("esi_test", ecg_cfg={"encodr": "x"})

    def test_json_path(self, tmp_path: Path) -> None:
        from esi.models.factory import load_config

        path = tmp_path / "mine.json"
        path.write_text(json.dumps(load_config("esi_test") | {"embed_dim": 8, "name": "mine"}))
        assert create_model(path).config.embed_dim == 8
        with pytest.raises(ModelNotFoundError):
            create_model(tmp_path / "missing.json")


def test_grad_checkpointing_gives_equal_gradients(batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    m = create_model("esi_test")
    m(**batch)["ecg_embedding"].sum().backward()
    ref = {n: p.grad.clone() for n, p in m.ecg_encoder.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(**batch)["ecg_embedding"].sum().backward()
    for n, p in m.ecg_encoder.named_parameters():
        assert torch.allclose(p.grad, ref[n], atol=1e-6), n


@pytest.mark.parametrize("name", ["esi_test", "esi_test_vit", "esi_test_xresnet"])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    # No dead modules: DDP runs without find_unused_parameters (a defect of the authors' code).
    from esi.losses import CoCaLoss

    torch.manual_seed(0)
    m = create_model(name)
    enc = m.tokenize(CAPTIONS)
    CoCaLoss()(m(torch.randn(3, 12, 1000), **enc), **enc)["loss"].backward()
    dead = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not dead


def test_bf16_autocast_forward_and_loss_are_finite(batch: dict[str, torch.Tensor]) -> None:
    from esi.losses import CoCaLoss

    torch.manual_seed(0)
    m = create_model("esi_test")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(**batch)
        res = CoCaLoss()(out, batch["input_ids"], batch["attention_mask"])
    res["loss"].backward()
    assert torch.isfinite(res["loss"])
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
