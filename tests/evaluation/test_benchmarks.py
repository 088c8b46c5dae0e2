"""Benchmark protocol: PTB-XL tasks from the real scp_statements.csv, folds, ICBEB classes, stratification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esi.data.store import EcgStore
from esi.errors import EvaluationError
from esi.evaluation.benchmarks import (
    PTBXL_TASKS,
    icbeb_labels,
    iterative_stratification,
    load_benchmark,
    load_statements,
    ptbxl_task_map,
)


class TestPtbxlTasks:
    @pytest.mark.parametrize(
        ("task", "n"),
        [
            ("all", 71),
            ("diagnostic", 44),
            ("subdiagnostic", 23),
            ("superdiagnostic", 5),
            ("form", 19),
            ("rhythm", 12),
        ],
    )
    def test_class_counts_on_the_real_statements(self, task: str, n: int) -> None:
        assert len(ptbxl_task_map(task)) == n

    def test_superclasses_and_aggregation(self) -> None:
        m = ptbxl_task_map("superdiagnostic")
        assert sorted(m) == ["CD", "HYP", "MI", "NORM", "STTC"]
        assert "IMI" in m["MI"] and "1AVB" in m["CD"] and "NDT" in m["STTC"] and "LVH" in m["HYP"]
        assert sum(len(v) for v in m.values()) == 44  # every diagnostic statement in exactly one superclass
        sub = ptbxl_task_map("subdiagnostic")
        assert sorted(sub["_AVB"]) == ["1AVB", "2AVB", "3AVB"]

    def test_every_statement_is_in_all(self) -> None:
        assert set(ptbxl_task_map("all")) == set(load_statements().index)

    def test_unknown_task(self) -> None:
        with pytest.raises(EvaluationError, match="unknown PTB-XL task"):
            ptbxl_task_map("morphology")


class TestPtbxlOnStore:
    def test_superdiagnostic_labels_and_folds(self, labelled_store: Path) -> None:
        b = load_benchmark("ptbxl", labelled_store, "superdiagnostic")
        store = EcgStore(labelled_store)
        m = store.manifest
        assert b.class_names == ["CD", "HYP", "MI", "NORM", "STTC"]
        for row, idx in enumerate(b.indices):
            codes = json.loads(m["labels"].iat[idx])
            want = {
                c for c, members in ptbxl_task_map("superdiagnostic").items() if set(members) & set(codes)
            }
            assert {c for c, v in zip(b.class_names, b.y[row], strict=True) if v} == want
        assert set(np.unique(b.folds[b.mask("train")])) <= set(range(1, 9))
        assert set(np.unique(b.folds[b.mask("val")])) == {9}
        assert set(np.unique(b.folds[b.mask("test")])) == {10}
        assert b.mask("train").sum() + b.mask("val").sum() + b.mask("test").sum() == len(b.indices)
        assert not b.folds_assigned

    def test_records_without_a_task_label_are_dropped(self, labelled_store: Path) -> None:
        b = load_benchmark("ptbxl", labelled_store, "form")
        # Of the fixture's statements only NDT is a form statement: the others' records are dropped.
        assert b.class_names == ["NDT"]
        m = EcgStore(labelled_store).manifest
        assert all("NDT" in json.loads(m["labels"].iat[i]) for i in b.indices)
        assert len(b.indices) < len(m)
        assert "ABQRS" in b.dropped_classes  # classes without positives are dropped and reported

    def test_zero_likelihood_statements_count(self, labelled_store: Path) -> None:
        b = load_benchmark("ptbxl", labelled_store, "rhythm")  # every record has SR with likelihood 0
        assert b.class_names == ["SR"] and len(b.indices) == len(EcgStore(labelled_store))

    def test_real_ptbxl_records(self, real_dir: Path, tmp_path: Path) -> None:
        from esi.data.prepare import prepare

        prepare("ptbxl", real_dir / "ptbxl", tmp_path / "s", progress=False)
        db = pd.read_csv(real_dir / "ptbxl" / "ptbxl_database.csv")
        for task in PTBXL_TASKS:
            try:
                b = load_benchmark("ptbxl", tmp_path / "s", task)
            except EvaluationError:
                continue  # a task none of the few sample records has
            m = EcgStore(tmp_path / "s").manifest
            for row, idx in enumerate(b.indices):
                ecg_id = int(m["record_id"].iat[idx].split("/")[-1])
                assert b.folds[row] == int(db.loc[db.ecg_id == ecg_id, "strat_fold"].iat[0])
        sup = load_benchmark("ptbxl", tmp_path / "s", "superdiagnostic")
        assert "NORM" in sup.class_names


class TestIcbeb:
    def test_label_mapping(self) -> None:
        assert icbeb_labels("icbeb", {"Normal": 1.0, "RBBB": 1.0}) == {"NORM", "CRBBB"}
        assert icbeb_labels("snomed", {"164889003": 1.0, "59118001": 1.0, "999": 1.0}) == {"AFIB", "CRBBB"}

    def test_real_cpsc_records_get_fixed_hash_folds(self, real_dir: Path, tmp_path: Path) -> None:
        import hashlib

        from esi.data.prepare import prepare

        prepare("challenge", real_dir / "cpsc2018", tmp_path / "s", progress=False)
        b = load_benchmark("icbeb", tmp_path / "s", seed=0)
        assert b.folds_assigned and b.fold_rule == "hash"
        assert set(b.class_names) <= {"NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD", "STE"}
        assert {"AFIB", "CRBBB"} <= set(b.class_names)
        # --seed never moves a record: seeds 0 and 1 give the same folds (a seeded stratification fails here)
        assert np.array_equal(b.folds, load_benchmark("icbeb", tmp_path / "s", seed=1).folds)
        # ... and the folds are the documented rule, computed here independently of the code under test
        for subject, fold in zip(b.subjects, b.folds, strict=True):
            digest = hashlib.sha256(("esi-fold-v1:" + str(subject)).encode()).hexdigest()
            assert fold == int(digest[:8], 16) % 10 + 1
        summary = b.summary()
        assert summary["fold_rule"] == "hash" and sum(summary["fold_sizes"].values()) == len(b.indices)

    def test_other_tasks_rejected(self, labelled_store: Path) -> None:
        with pytest.raises(EvaluationError):
            load_benchmark("icbeb", labelled_store, "superdiagnostic")

    def test_ptbxl_store_has_no_icbeb_labels(self, labelled_store: Path) -> None:
        with pytest.raises(EvaluationError, match="ICBEB"):
            load_benchmark("icbeb", labelled_store)


class TestStratification:
    def test_deterministic_balanced_and_stratified(self) -> None:
        rng = np.random.default_rng(0)
        y = (rng.random((1000, 9)) < np.linspace(0.02, 0.4, 9)).astype(int)
        a = iterative_stratification(y, 10, seed=1)
        assert np.array_equal(a, iterative_stratification(y, 10, seed=1))
        sizes = np.bincount(a, minlength=10)
        assert sizes.max() - sizes.min() <= 5
        for c in range(9):
            per_fold = np.bincount(a[y[:, c] == 1], minlength=10)
            assert per_fold.max() - per_fold.min() <= 2  # each class spread evenly over the folds

    def test_groups_stay_in_one_fold(self) -> None:
        rng = np.random.default_rng(2)
        y = (rng.random((300, 3)) < 0.3).astype(int)
        groups = rng.integers(0, 80, 300)
        folds = iterative_stratification(y, 10, seed=0, groups=groups)
        for g in np.unique(groups):
            assert len(set(folds[groups == g])) == 1

    def test_unequal_proportions(self) -> None:
        y = (np.random.default_rng(3).random((1000, 4)) < 0.2).astype(int)
        f = iterative_stratification(y, 2, seed=0, proportions=[0.1, 0.9])
        assert abs((f == 0).sum() - 100) <= 3

    def test_store_without_folds(self, tmp_path: Path, store_factory) -> None:
        store = store_factory["labelled"](tmp_path / "s", folds=False)
        b = load_benchmark("ptbxl", store, "superdiagnostic")
        from esi.evaluation.benchmarks import hash_folds

        assert b.folds_assigned and np.array_equal(b.folds, hash_folds(b.subjects))
        for s in np.unique(b.subjects):  # subject-disjoint folds
            assert len(set(b.folds[b.subjects == s])) == 1


def test_custom_benchmark(tmp_path: Path, store_factory) -> None:
    rows = [
        {
            "record_id": f"x/{i}",
            "subject_id": str(i),
            "fold": i % 10 + 1,
            "label_system": "none",
            "labels": "{}",
            "conditions": json.dumps({"164889003": 1.0} if i % 2 else {"426783006": 1.0}),
        }
        for i in range(40)
    ]
    store = store_factory["write"](tmp_path / "s", np.zeros((40, 12, 500)), rows)
    b = load_benchmark("custom", store)
    assert b.class_names == ["164889003", "426783006"]
    assert b.class_texts["164889003"][0] == "atrial fibrillation"
    assert (b.y.sum(1) == 1).all()


def test_unknown_benchmark(labelled_store: Path) -> None:
    with pytest.raises(EvaluationError, match="unknown benchmark"):
        load_benchmark("mitbih", labelled_store)
