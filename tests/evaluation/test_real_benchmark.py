"""The real-ECG benchmark: a fixed split of the shipped records, and its evaluation (zero-shot + CV probe)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from esi.conditions.harmonize import harmonize
from esi.data.readers import list_refs
from esi.data.real_split import HEADLINE, REAL_ROOT, SPLIT_FILE, load_split, make_split, part_mask, record_key
from esi.errors import DataError
from esi.evaluation.metrics import binary_auc


@pytest.fixture(scope="module")
def header_conditions() -> dict[str, set[str]]:
    """Record key -> harmonised conditions, read from the headers alone (no signals)."""
    refs = list_refs("wfdb", REAL_ROOT)
    assert not [r for r in refs if r.error]
    return {record_key(r.record_id): set(harmonize(r.meta["label_system"], r.meta["labels"]).conditions)
            for r in refs}


def test_every_shipped_record_is_in_the_split_once(header_conditions: dict[str, set[str]]) -> None:
    split = load_split()
    assert set(split) == set(header_conditions)
    with SPLIT_FILE.open() as fh:
        keys = [row["record"] for row in csv.DictReader(fh)]
    assert len(keys) == len(set(keys))


def test_split_file_is_what_the_documented_rule_gives(header_conditions: dict[str, set[str]]) -> None:
    # Re-deriving the split from the headers must reproduce the committed file: a changed rule, a changed
    # harmonisation of a headline condition or an edited file all fail here.
    assert make_split(header_conditions) == load_split()


def test_each_headline_condition_has_evaluation_positives(header_conditions: dict[str, set[str]]) -> None:
    split = load_split()
    for cid, name in HEADLINE.items():
        parts = [split[k] for k, conds in header_conditions.items() if cid in conds]
        assert parts.count("eval") >= 3, (name, parts.count("eval"))
        assert parts.count("eval") >= parts.count("pretrain"), name


def test_part_mask_matches_store_ids_and_keys() -> None:
    split = {"ludb/1": "eval", "ludb/2": "pretrain"}
    ids = ["real_benchmark/ludb/1", "elsewhere/ludb/2", "ludb/1", "x/unknown", "a/b/ludb/1", "ludb/10"]
    assert part_mask(ids, "eval", split).tolist() == [True, False, True, False, True, False]
    assert part_mask(ids, "pretrain", split).tolist() == [False, True, False, False, False, False]


def test_a_malformed_split_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "split.csv"
    bad.write_text("record,part\nludb/1,train\n")
    with pytest.raises(DataError, match="must be one of pretrain, eval"):
        load_split(bad)
    bad.write_text("record,part\nludb/1,eval\nludb/1,pretrain\n")
    with pytest.raises(DataError, match="listed twice"):
        load_split(bad)


def test_cross_validated_probe_scores_each_fold_with_a_probe_that_never_saw_it() -> None:
    from esi.evaluation.real_eval import cross_validated_probe

    rng = np.random.default_rng(0)
    n, d = 200, 150
    keys = [f"record:{i}" for i in range(n)]
    # Pure noise with more features than records: a probe scored on its own training records separates
    # them perfectly, one scored out of fold is at chance.
    x = rng.normal(size=(n, d))
    y = (rng.random((n, 1)) < 0.3).astype(np.int64)
    oof = cross_validated_probe(x, y, keys)
    assert abs(binary_auc(y[:, 0], oof[:, 0]) - 0.5) < 0.15
    # A separable signal is found out of fold.
    x[:, :5] += 3.0 * y[:, :1]
    oof = cross_validated_probe(x, y, keys)
    assert binary_auc(y[:, 0], oof[:, 0]) > 0.9


def test_probe_classes_in_worker_processes_give_the_same_scores_in_the_same_columns() -> None:
    from esi.evaluation.real_eval import cross_validated_probe

    rng = np.random.default_rng(1)
    n = 120
    keys = [f"record:{i}" for i in range(n)]
    y = (rng.random((n, 3)) < np.array([0.2, 0.3, 0.4])).astype(np.int64)
    x = rng.normal(size=(n, 20))
    x[:, 0] += 3.0 * y[:, 0]  # only class 0 is separable: a column mix-up between workers shows in the AUCs
    one = cross_validated_probe(x, y, keys, n_jobs=1)
    two = cross_validated_probe(x, y, keys, n_jobs=2)
    assert np.array_equal(one, two)
    assert binary_auc(y[:, 0], two[:, 0]) > 0.9 and binary_auc(y[:, 1], two[:, 1]) < 0.75


def test_probe_folds_are_stratified_per_class_fixed_by_the_data_and_keep_subjects_together() -> None:
    from esi.evaluation.real_eval import stratified_folds

    rng = np.random.default_rng(1)
    keys = np.array([f"s{i // 2}" if i < 40 else f"record:{i}" for i in range(185)])  # 20 subjects with 2 records
    labels = np.zeros(185, np.int64)
    labels[rng.choice(185, 8, replace=False)] = 1  # a rare class, as 1AVB in the real benchmark
    folds = stratified_folds(labels, keys)
    subject_positive = {k: labels[keys == k].max() for k in set(keys)}
    for v in (0, 1):  # subjects with and without a positive: each fold holds its share, within one
        per_fold = np.bincount([folds[list(keys).index(k)] for k, p in subject_positive.items() if p == v],
                               minlength=6)[1:]
        assert per_fold.max() - per_fold.min() <= 1, (v, per_fold)
    for k in set(keys):  # a subject's records share a fold
        assert len(set(folds[keys == k])) == 1
    # no seed and no row order enters: the same key gets the same fold after shuffling the rows
    perm = rng.permutation(185)
    np.testing.assert_array_equal(stratified_folds(labels[perm], keys[perm]), folds[perm])


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from esi.data.prepare import prepare

    out = tmp_path_factory.mktemp("real") / "store"
    prepare("wfdb", REAL_ROOT, out, progress=False, workers=0)
    return out


def test_real_benchmark_holds_only_the_evaluation_part(real_store: Path) -> None:
    from esi.data.store import EcgStore
    from esi.evaluation.real import real_benchmark

    store = EcgStore(real_store)
    bench = real_benchmark(store)
    ids = store.manifest["record_id"].astype(str).to_numpy()[bench.indices]
    split = load_split()
    assert {split[record_key(i)] for i in ids} == {"eval"}
    assert len(ids) == sum(p == "eval" for p in split.values())
    assert bench.class_names[:4] == list(HEADLINE)
    conds = store.manifest["conditions"].to_numpy()[bench.indices]
    for j, cid in enumerate(bench.class_names[:4]):
        truth = np.array([cid in json.loads(c or "{}") for c in conds])
        assert (bench.y[:, j].astype(bool) == truth).all()
    assert set(np.unique(bench.folds)) == {1, 2, 3, 4, 5}


def test_evaluate_real_writes_the_report_and_checks_contamination(real_store: Path, tmp_path: Path) -> None:
    from esi.evaluation.real_eval import evaluate_real
    from esi.models import create_model

    model = create_model("esi_test")
    model.checkpoint_extra = {"provenance": {"record_ids": ["real_benchmark/ludb/9999"]}}
    r = evaluate_real(model, real_store, tmp_path / "eval", modes=("zero-shot", "linear-probe"),
                      n_bootstrap=20, progress=False, use_cache=False)
    m = r.metrics["modes"]
    assert set(m) == {"zero_shot", "linear_probe"}
    assert m["zero_shot"]["headline_classes"] == list(HEADLINE)
    assert m["zero_shot"]["positives"]["164889003"] >= 3
    assert (tmp_path / "eval" / "report.md").read_text().count("| AF |") == 1
    assert r.metrics["contamination"]["overlap"] == 0
    # the report describes the probe's per-class folds, not the benchmark's plain hash folds
    b = r.metrics["benchmark"]
    assert "per class" in b["fold_rule"] and "fold_sizes" not in b and m["linear_probe"]["cv_repeats"] == 3
    assert "stratified per class, 3 fixed fold deals" in (tmp_path / "eval" / "report.md").read_text()
    # zero-shot: the headline is the contrast rule (against a normal sinus-rhythm caption); cosine is reported too
    zs = m["zero_shot"]
    assert zs["score_rule"] == "contrast" and set(zs["score_rules"]) == {"contrast", "cosine"}
    assert zs["score_rules"]["contrast"]["macro_auc"] == zs["macro_auc"] != zs["score_rules"]["cosine"]["macro_auc"]
    assert zs["reference_prompts"][0].startswith("ECG shows sinus rhythm and normal ECG.")
    assert "Zero-shot under each score rule" in (tmp_path / "eval" / "report.md").read_text()


def test_evaluating_on_records_the_model_was_pretrained_on_is_refused(real_store: Path, tmp_path: Path) -> None:
    from esi.evaluation.provenance import ContaminationError
    from esi.evaluation.real_eval import evaluate_real
    from esi.models import create_model

    eval_key = next(k for k, p in load_split().items() if p == "eval")
    model = create_model("esi_test")
    model.checkpoint_extra = {"provenance": {"record_ids": [f"real_benchmark/{eval_key}"]}}
    with pytest.raises(ContaminationError):
        evaluate_real(model, real_store, tmp_path / "eval", modes=("zero-shot",), n_bootstrap=0, progress=False,
                      use_cache=False)


def test_an_unknown_score_rule_is_refused_before_any_work(tmp_path: Path) -> None:
    """The rule is checked first: a typo must not cost the embeddings (nor be reported as a store problem)."""
    from esi.errors import EvaluationError
    from esi.evaluation.real_eval import evaluate_real
    from esi.evaluation.run import evaluate

    with pytest.raises(EvaluationError, match="score rule 'softmax'.*--score-rule"):
        evaluate_real("no-such-model.pt", tmp_path / "no-store", tmp_path / "eval", score_rule="softmax")
    with pytest.raises(EvaluationError, match="score rule 'softmax'"):
        evaluate("no-such-model.pt", "synthetic", tmp_path / "no-store", score_rule="softmax", out=tmp_path / "e")
