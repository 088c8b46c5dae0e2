"""End to end: synthetic dataset -> store -> short pretraining (esi_test) -> evaluation suite.

About four minutes on two CPU cores (one pretraining, shared by both tests); part of the default suite because it
is the transfer claim of the suite.
The margins asserted are below the ones measured with these seeds (see the comments), so the test checks
that pretraining transfers, not the exact numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esi.data.store import EcgStore


def _pretrain_on_synthetic(work: Path, realism: str) -> tuple[Path, Path]:
    """120 subjects x 4 records of the generator profile ``realism``, captioned as `esi caption` writes them,
    esi_test pretrained for 20 epochs on folds 1-8: (final checkpoint, store)."""
    from esi.cqa.captions import caption_store
    from esi.cqa.llm import OfflineComposer
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset
    from esi.evaluation.prompts import CorpusPassages
    from esi.train.config import PretrainConfig
    from esi.train.loop import pretrain

    generate_dataset(work / "synth", subjects=120, records_per_subject=4, seed=0, progress=False, realism=realism)
    prepare("ptbxl", work / "synth", work / "store", progress=False)
    # Captions as `esi caption` writes them (offline composer over the corpus documents), so the zero-shot
    # caption prompts meet the text the model was pretrained on.
    caption_store(work / "store", work / "captions.parquet", kb=CorpusPassages(), generator=OfflineComposer(),
                  cache_path=work / "caption_cache.sqlite", progress=False)
    result = pretrain(
        PretrainConfig(
            model="esi_test",
            store=str(work / "store"),
            captions=str(work / "captions.parquet"),
            out=str(work / "run"),
            epochs=20,
            warmup_epochs=1,
            decay_every=1000,
            batch_size=32,
            lr=1e-3,
            mlflow=False,
            folds=list(range(1, 9)),
            num_workers=0,
            seed=0,
        ),
        progress=False,
    )
    return result.final_checkpoint, work / "store"


# One pretraining serves both tests of this module (it is most of the module's time). Generator v3: the
# identification test below needs its session variation; the transfer claim holds on it too.
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _pretrain_on_synthetic(tmp_path_factory.mktemp("e2e_v3"), "v3")


def test_pretrained_model_transfers(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    from esi.evaluation.finetune import FinetuneConfig
    from esi.evaluation.run import evaluate

    checkpoint, store = pretrained
    res = evaluate(
        str(checkpoint),
        "synthetic",
        store,
        "superdiagnostic",
        "zero-shot,linear-probe,baselines,identification",
        tmp_path,
        fractions=(0.1, 1.0),
        seeds=(0, 1, 2),
        c_grid=(0.01, 0.1, 1.0),
        n_bootstrap=200,
        finetune_config=FinetuneConfig(epochs=1, max_steps_per_epoch=1),
        progress=False,
        log_mlflow=False,
    )
    modes = res.metrics["modes"]
    zs = modes["zero_shot"]["macro_auc"]
    lp = modes["linear_probe"]["fractions"]
    rnd = modes["linear_probe_random_init"]["fractions"]
    ident = modes["identification"]
    print(res.table)
    print("zero-shot by prompt scheme:", {k: v["macro_auc"] for k, v in modes["zero_shot"]["schemes"].items()})
    # Pretrained on folds 1-8 of this very store: provenance known, no test record among them.
    assert res.metrics["contamination"]["status"] == "known" and res.metrics["contamination"]["overlap"] == 0
    # Measured with these seeds (CPU, 2026-12-01, generator v3): zero-shot 0.765 [0.684, 0.858] under the default
    # contrast rule (0.540 under the plain cosine); linear probe 10% 0.635 vs random init 0.572, 100% 0.825 vs
    # 0.758; identification top-1 0.583 over 12 subjects (chance 0.083). On generator v1 (the fixture until
    # then): zero-shot 0.654 under the cosine, probe 100% 0.899 vs 0.776.
    assert zs > 0.6  # zero-shot clearly above chance
    # The pretrained encoder's linear probe beats the same encoder randomly initialised.
    assert lp["1"]["macro_auc"] > rnd["1"]["macro_auc"] + 0.05
    assert lp["0.1"]["macro_auc"] > rnd["0.1"]["macro_auc"]
    # The identification pool is the whole test fold; whether pretraining helps it: the test below.
    assert ident["pool_records"] == int((EcgStore(store).manifest["fold"] == 10).sum())


# Identification needs repeat recordings that differ the way real ones do. Under v1/v2 a subject's electrodes sit
# within 2 degrees of where they sat before and its noise habits (wander, EMG, mains hum at 50 or 60 Hz) never
# change, so random convolutions identify people by electrode geometry and hum: measured 2026-12-01, random inits
# 0.799-0.855 AUC against 0.812 for the pretrained fixture (v1 test subjects). Generator v3 moves the precordial
# electrodes and redraws noise levels per session, as real repeat recordings do; the physiology the captions talk
# about (conditions, age, sex) stays the person's.
# Measured by bench/identification.py (CPU, 2026-12-01, 2 threads, one run), 100 unseen subjects x 2 records, same pairs
# for every model, top-1 (AUC): esi_test pretrained on v3 as the `pretrained` fixture makes it, pretraining seeds 0-2,
# on v3 test subjects (generator seeds 1 and 2): 0.29-0.44, mean 0.36 (0.827-0.877), against random inits of the same
# architecture, seeds 0-4: 0.14-0.30, mean 0.22 (0.785-0.863; means 0.803 and 0.828). On v1 test subjects the same
# checkpoints score 0.28-0.44 against random 0.26-0.40: no margin there. This test's run (1 thread): 0.35 (0.829)
# against 0.20-0.21 (0.785-0.814). The same pretraining for 10 epochs: 0.23 (0.787), no better than random. Top-1 (the
# paper's ACC) separates the models; one-vs-rest AUC with one positive per subject overlaps, so AUC only has to beat the
# random inits' mean.
IDENT_TOP1_MARGIN = 0.05


def test_pretrained_identifies_subjects_better_than_random_init(
    pretrained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset
    from esi.evaluation.embed import EmbeddingCache
    from esi.evaluation.identification import identification
    from esi.evaluation.run import random_init_like
    from esi.models.checkpoint import load_model

    checkpoint, _ = pretrained
    work = tmp_path_factory.mktemp("ident")
    # Subjects the model never saw (another generator seed), 100 of them with two sessions each.
    generate_dataset(work / "synth", subjects=100, records_per_subject=2, seed=1, progress=False, realism="v3")
    prepare("ptbxl", work / "synth", work / "store", progress=False)
    store = EcgStore(work / "store")
    idx = store.indices()
    subjects = store.manifest["subject_id"].astype(str).to_numpy()[idx]
    model = load_model(checkpoint)

    def scores(m) -> tuple[float, float]:
        r = identification(EmbeddingCache(enabled=False), m, store, idx, subjects, benchmark="synthetic",
                           progress=False)
        assert r["n_subjects"] == 100 and r["pairing"] == "records"
        return r["top1_accuracy"], r["macro_auc"]

    random_scores = [scores(random_init_like(model, s)) for s in (0, 1, 2)]
    top1, auc = scores(model)
    print("identification top-1 / AUC: pretrained", top1, auc, "random init", random_scores)
    # A random model at this margin would have to beat the best of three random inits by 5 points of top-1.
    assert top1 >= max(t for t, _ in random_scores) + IDENT_TOP1_MARGIN
    assert auc > float(np.mean([a for _, a in random_scores]))
