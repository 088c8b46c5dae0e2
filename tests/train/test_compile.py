"""torch.compile of the step (esi.train.compile): same numbers as eager, one graph per compiled part, no
recompilation for a new caption length, the eager model back afterwards, and the auto policy."""

from __future__ import annotations

import math

import pytest
import torch

from esi.errors import ConfigError
from esi.losses import CoCaLoss
from esi.models import create_model
from esi.train.compile import compile_model, should_compile
from esi.train.config import PretrainConfig

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
CAPTIONS = ["sinus rhythm", "atrial fibrillation with rapid ventricular response and no p waves",
            "left bundle branch block with wide qrs", "normal ecg",
            "sinus bradycardia with st depression in lateral leads and t wave inversion in v5 and v6",
            "right bundle branch block", "first degree av block", "inferior myocardial infarction"]


def test_policy() -> None:
    assert should_compile("off", device=CPU, total_steps=10_000)[0] is False
    assert should_compile("on", device=CPU, total_steps=1)[0] is True
    on, why = should_compile("auto", device=CPU, total_steps=90)  # make run: 3 epochs x 30 steps of esi_cpu
    assert on is False and "90 steps" in why
    assert should_compile("auto", device=CPU, total_steps=5000)[0] is True
    assert should_compile("auto", device=CUDA, total_steps=5000)[0] is True
    assert should_compile("auto", device=CUDA, total_steps=10)[0] is False
    with pytest.raises(ConfigError, match="compile"):
        should_compile("always", device=CPU, total_steps=1)
    with pytest.raises(ConfigError, match="compile='yes'"):
        PretrainConfig(compile="yes").validate()


def _grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    out = model(batch["signal"], ids, mask, caption_targets_only=True)
    loss = CoCaLoss()(out, ids, mask)["loss"]
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compiled_step_matches_eager_in_one_graph_per_part_without_recompiling() -> None:
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = create_model("esi_test").eval()  # no dropout / DropPath: eager and compiled see the same function
    g = torch.Generator().manual_seed(0)
    # two batches with other caption lengths (and length groups of other sizes): dynamic, not recompiled
    batches = [{"signal": torch.randn(4, 12, 640, generator=g), **model.tokenize(CAPTIONS[i:i + 4])}
               for i in (0, 4)]
    assert batches[0]["input_ids"].shape[1] != batches[1]["input_ids"].shape[1]
    eager = [_grads(model, b) for b in batches]
    keys = list(model.state_dict())

    torch._dynamo.reset()
    counters.clear()
    handle = compile_model(model)
    assert handle.names == ["ConvNeXtV2_1d.forward_features", "CaptionDecoder.hidden"]
    compiled = [_grads(model, b) for b in batches]
    assert counters["stats"]["unique_graphs"] == 2  # the encoder and the decoder, once each
    assert not counters["graph_break"]
    for (loss_e, grads_e), (loss_c, grads_c) in zip(eager, compiled, strict=True):
        assert loss_c == pytest.approx(loss_e, rel=1e-4)
        assert set(grads_c) == set(grads_e)
        for name, grad in grads_e.items():
            assert torch.allclose(grads_c[name], grad, rtol=1e-3, atol=1e-5), name

    handle.remove()
    assert "forward_features" not in vars(model.ecg_encoder) and "hidden" not in vars(model.decoder)
    assert list(model.state_dict()) == keys  # nothing compiled leaks into checkpoints


def test_trainer_compiles_on_request_and_keeps_the_warm_up_out_of_the_throughput(make_data, tmp_path) -> None:
    import json

    from esi.models.checkpoint import load_model
    from esi.train.loop import pretrain

    store, captions = make_data(16)
    cfg = PretrainConfig(model="esi_test", store=str(store), captions=str(captions), out=str(tmp_path / "run"),
                         epochs=1, batch_size=8, warmup_epochs=0, checkpoint_every_steps=0, num_workers=0,
                         mlflow=False, compile="on")
    r = pretrain(cfg, progress=False)
    assert r.compiled and r.steps == 2 and r.compile_warmup_s > 0
    assert r.history[0].get("compile_warmup") is True and "compile_warmup" not in r.history[1]
    # the run's throughput is that of the one step after the warm-up, not diluted by compilation
    assert r.samples_per_s == pytest.approx(r.history[1]["samples_per_s"], rel=1e-6)
    saved = json.loads((r.run_dir / "history.json").read_text())
    assert saved["compiled"] is True and saved["compile_warmup_s"] == pytest.approx(r.compile_warmup_s)
    assert all(math.isfinite(h["loss"]) for h in r.history)
    model = load_model(r.final_checkpoint)  # a plain checkpoint: nothing of the compiled methods in it
    assert "forward_features" not in vars(model.ecg_encoder)
