"""The synthetic generator: each condition is measurable in its own output, the physics holds, output is
deterministic, and the PTB-XL-layout dataset reads back through the ptbxl reader."""

from __future__ import annotations

import hashlib
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esi.data import measure as m
from esi.data.synthetic import (
    CONDITIONS,
    SCP_STATEMENTS,
    _seed,
    generate_dataset,
    generate_labels,
    generate_record,
    make_subject,
)
from esi.errors import DataError

FS = 500
N_SUBJECTS = 3  # records per condition: enough to catch a bad signature, small enough to stay fast


@cache
def records(*conditions: str) -> tuple[np.ndarray, ...]:
    """A few records of different subjects showing ``conditions`` (cached across tests)."""
    out = []
    for i in range(N_SUBJECTS):
        subject = make_subject(_seed(7, 0, i), subject_id=i)
        out.append(generate_record(subject, list(conditions), _seed(7, 1, i)))
    return tuple(out)


def each(fn, *conditions: str) -> np.ndarray:
    return np.array([fn(x, FS) for x in records(*conditions)], dtype=float)


def test_conditions_are_ptbxl_scp_codes() -> None:
    codes = set(pd.read_csv(SCP_STATEMENTS, index_col=0).index)
    assert set(CONDITIONS) <= codes
    assert len(CONDITIONS) >= 16


def test_shape_units_and_lead_relations() -> None:
    x = records("SR")[0]
    assert x.shape == (12, 5000) and x.dtype == np.float32
    lead_i, lead_ii, lead_iii, avr, avl, avf = x[:6].astype(np.float64)
    np.testing.assert_allclose(lead_i + lead_iii, lead_ii, atol=1e-5)  # Einthoven
    np.testing.assert_allclose(avr, -(lead_i + lead_ii) / 2, atol=1e-5)  # Goldberger
    np.testing.assert_allclose(avl, lead_i - lead_ii / 2, atol=1e-5)
    np.testing.assert_allclose(avf, lead_ii - lead_i / 2, atol=1e-5)
    assert 0.3 < np.ptp(x[1]) < 6.0  # millivolts, not volts or microvolts
    assert x.std(axis=1).min() > 0.02  # every lead carries signal


def test_same_seed_same_bytes_other_seed_differs() -> None:
    subject = make_subject(_seed(1, 0, 0))
    a = generate_record(subject, ["LVH", "PVC"], _seed(1, 1, 0))
    b = generate_record(make_subject(_seed(1, 0, 0)), ["LVH", "PVC"], _seed(1, 1, 0))
    c = generate_record(subject, ["LVH", "PVC"], _seed(2, 1, 0))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_rates_of_sinus_rhythms() -> None:
    assert np.all((each(m.heart_rate, "SR") > 60) & (each(m.heart_rate, "SR") < 100))
    assert np.all(each(m.heart_rate, "SBRAD") < 60)
    assert np.all(each(m.heart_rate, "STACH") > 100)


def test_atrial_fibrillation_is_irregular_without_p_waves() -> None:
    sinus = each(m.rr_irregularity, "SR")
    af = each(m.rr_irregularity, "AFIB")
    assert af.min() > 0.1 and af.min() > 3 * sinus.max()
    assert all(m.pr_interval_ms(x, FS) is None for x in records("AFIB"))
    assert all(m.pr_interval_ms(x, FS) is not None for x in records("SR"))


def test_atrial_flutter_sawtooth_and_regular_conduction() -> None:
    from scipy.signal import welch

    for x, subject_id in zip(records("AFLT"), range(N_SUBJECTS), strict=True):
        flutter_hz = make_subject(_seed(7, 0, subject_id)).traits["flutter_bpm"] / 60.0
        f, pxx = welch(x[2], fs=FS, nperseg=2048)  # lead III: flutter waves dominate between QRS complexes
        band = (f > 3.5) & (f < 7.0)
        assert abs(f[band][np.argmax(pxx[band])] - flutter_hz) < 0.4
        rr = m.rr_intervals(x, FS)
        # Ventricular beats follow whole multiples (2:1, 3:1, 4:1) of the flutter cycle.
        ratio = rr * flutter_hz
        assert np.all(np.abs(ratio - np.round(ratio)) < 0.2)


def test_bundle_branch_blocks_widen_qrs() -> None:
    assert each(m.qrs_width_ms, "NORM").max() < 110
    assert each(m.qrs_width_ms, "CRBBB").min() >= 120
    assert each(m.qrs_width_ms, "CLBBB").min() >= 120
    for x in records("CRBBB"):
        mb = m.median_beat(x, FS)
        late = mb.beat[:, mb.qrs_off - int(0.03 * FS): mb.qrs_off]
        assert late[6].max() > 0.1  # terminal R' in V1
        assert late[0].min() < -0.05 and late[11].min() < -0.05  # wide terminal S in I and V6
    for x in records("CLBBB"):
        assert m.s_amplitude_mv(x, FS, "V1") > 0.5  # deep S in V1
        assert m.st_level_mv(x, FS, "V2") > 0.1  # discordant ST elevation
        assert m.t_amplitude_mv(x, FS, "V6") < 0  # discordant T in V6


def test_first_degree_av_block_prolongs_pr() -> None:
    normal = each(m.pr_interval_ms, "NORM")
    assert np.all((normal > 90) & (normal < 200))
    assert each(m.pr_interval_ms, "1AVB").min() > 200


def test_left_anterior_fascicular_block_axis() -> None:
    assert each(m.qrs_axis_deg, "NORM").min() > -30
    lafb = each(m.qrs_axis_deg, "LAFB")
    assert np.all((lafb < -30) & (lafb > -95))
    for x in records("LAFB"):
        assert m.r_amplitude_mv(x, FS, "aVL") > m.s_amplitude_mv(x, FS, "aVL")  # qR in aVL
        assert m.s_amplitude_mv(x, FS, "III") > m.r_amplitude_mv(x, FS, "III")  # rS in III


def test_lvh_voltage_and_low_voltage() -> None:
    assert each(m.sokolow_lyon_mv, "NORM").max() < 3.5
    assert each(m.sokolow_lyon_mv, "LVH").min() > 3.5
    for x in records("LVOLT"):
        assert m.qrs_amplitude_mv(x, FS)[:6].max() < 0.5
    for x in records("NORM"):
        assert m.qrs_amplitude_mv(x, FS)[:6].max() > 0.5


def test_st_and_t_changes() -> None:
    for x in records("IMI"):
        st = m.st_level_mv(x, FS)
        assert min(st[1], st[2], st[5]) > 0.05  # II, III, aVF elevated
        assert st[4] < -0.03  # reciprocal depression in aVL
    for x in records("AMI"):
        assert m.st_level_mv(x, FS)[6:10].max() > 0.15  # anterior elevation V1-V4
        assert m.s_amplitude_mv(x, FS, "V2") > 2 * m.r_amplitude_mv(x, FS, "V2")  # Q/QS in V2
    for x in records("STD_"):
        assert m.st_level_mv(x, FS, "V5") < -0.05
    v2_st = []
    for x in records("NORM"):
        st = m.st_level_mv(x, FS)
        assert np.abs(st[:6]).max() < 0.05  # limb leads: isoelectric
        # V1-V3 carry the small J-point elevation real normals show (median 0.03-0.05 mV in the real benchmark)
        assert np.abs(st[6:]).max() < 0.1
        v2_st.append(st[7])
        assert m.t_amplitude_mv(x, FS, "V5") > 0
    assert np.median(v2_st) > 0.015
    for x in records("INVT"):
        assert m.t_amplitude_mv(x, FS, "V5") < 0


def test_long_qt() -> None:
    def qtc(x: np.ndarray, fs: float) -> float:  # Fridericia
        return m.qt_interval_ms(x, fs) / (60.0 / m.heart_rate(x, fs)) ** (1 / 3)

    normal, long_qt = each(qtc, "NORM"), each(qtc, "LNGQT")
    assert normal.max() < 450
    assert long_qt.min() > 460 and long_qt.min() > normal.max() + 40


@pytest.mark.parametrize(("code", "compensatory"), [("PVC", True), ("PAC", False)])
def test_premature_beats(code: str, compensatory: bool) -> None:
    for x in records(code):
        rr = m.rr_intervals(x, FS)
        base = np.median(rr)
        early = np.flatnonzero(rr[:-1] < 0.82 * base)
        assert early.size >= 1
        pair = rr[early] + rr[early + 1]
        if compensatory:
            assert np.all(np.abs(pair - 2 * base) < 0.12 * base)  # full compensatory pause
        else:
            assert np.all(pair < 1.93 * base)  # the sinus node is reset


def test_subject_identity_is_stable_across_records() -> None:
    """Median beats of one subject's records correlate more with each other than with other subjects'."""
    beats = {}
    for i in range(4):
        subject = make_subject(_seed(11, 0, i), subject_id=i)
        beats[i] = [m.median_beat(generate_record(subject, ["SR"], _seed(11, 1, i, k)), FS).beat[:, 150:450]
                    for k in range(2)]

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    for i in beats:
        same = corr(beats[i][0], beats[i][1])
        others = max(corr(beats[i][0], beats[j][1]) for j in beats if j != i)
        assert same > others


def test_age_and_sex_shape_subjects() -> None:
    subs = [make_subject(_seed(3, 0, i)) for i in range(1500)]
    age = np.array([s.age for s in subs])
    female = np.array([s.sex == "F" for s in subs])
    amp = np.array([s.qrs_amp_mv for s in subs])
    assert 18 <= age.min() and age.max() <= 90 and 0.35 < female.mean() < 0.65
    assert amp[female].mean() < amp[~female].mean()
    assert np.mean([s.qtc_s for s in subs if s.sex == "F"]) > np.mean([s.qtc_s for s in subs if s.sex == "M"])
    assert np.corrcoef(age, [s.axis_deg for s in subs])[0, 1] < -0.2  # leftward axis with age
    assert np.corrcoef(age, [s.pr_s for s in subs])[0, 1] > 0.2  # longer PR with age


def test_label_prevalence_and_consistency() -> None:
    counts: Counter[str] = Counter()
    n = 0
    for i in range(600):
        subject = make_subject(_seed(5, 0, i), subject_id=i)
        seen = [generate_labels(_seed(5, 1, i, k), subject) for k in range(3)]
        for labels in seen:
            counts.update(labels.keys())
            n += 1
            assert set(labels) <= set(CONDITIONS)
            if "AFIB" in labels or "AFLT" in labels:
                assert not {"SR", "1AVB", "PAC", "NORM"} & set(labels)
            assert sum(c in labels for c in ("SR", "SBRAD", "STACH", "AFIB", "AFLT")) == 1
            if "NORM" in labels:
                assert set(labels) <= {"NORM", "SR", "SBRAD", "STACH"}
            assert all(v in (0.0, 35.0, 50.0, 80.0, 100.0) for v in labels.values())
        for chronic in ("LVH", "CRBBB", "CLBBB", "LAFB", "IMI", "ASMI", "AMI"):
            assert len({chronic in labels for labels in seen}) == 1  # kept across the subject's records
    assert 0.33 <= counts["NORM"] / n <= 0.45
    for code in CONDITIONS:
        assert counts[code] > 0, code


def test_bad_conditions_raise_domain_errors() -> None:
    subject = make_subject(_seed(0, 0, 0))
    with pytest.raises(DataError, match="unknown synthetic condition"):
        generate_record(subject, ["NOPE"], _seed(0, 1, 0))
    with pytest.raises(DataError, match="conflicting rhythms"):
        generate_record(subject, ["AFIB", "SR"], _seed(0, 1, 0))
    with pytest.raises(DataError, match="1AVB"):
        generate_record(subject, ["AFIB", "1AVB"], _seed(0, 1, 0))


# --- the dataset on disk --------------------------------------------------------------------------------
def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate_dataset(root, subjects=12, records_per_subject=2, seed=3, progress=False)
    return root, summary


def test_dataset_reads_back_through_the_ptbxl_reader(dataset: tuple[Path, dict]) -> None:
    from esi.data.readers import get_reader

    root, summary = dataset
    assert summary["records"] == 24 and summary["subjects"] == 12 and summary["path"] == str(root)
    assert (root / "scp_statements.csv").read_bytes() == SCP_STATEMENTS.read_bytes()
    reader = get_reader("ptbxl")
    refs = reader.list_refs(root)
    assert len(refs) == 24
    db = pd.read_csv(root / "ptbxl_database.csv")
    assert set(db["sex"]) <= {0, 1}
    # Folds are by subject: no subject in two folds.
    assert db.groupby("patient_id")["strat_fold"].nunique().max() == 1
    assert set(db["strat_fold"]) <= set(range(1, 11))
    total = Counter()
    for ref, row in zip(refs, db.itertuples(index=False), strict=True):
        rec = reader.read(ref)
        assert rec.fs == 500 and rec.signal.shape == (12, 5000)
        assert rec.labels == eval(row.scp_codes)  # noqa: S307 - our own literal
        assert rec.sex == ("F" if row.sex == 1 else "M") and rec.age == row.age
        assert rec.fold == row.strat_fold and rec.subject_id == str(int(row.patient_id))
        total.update(rec.labels.keys())
    assert dict(total) == summary["conditions"]
    # The stored signal is the generator's output, quantised to 1 uV.
    first = reader.read(refs[0])
    subject = make_subject(_seed(3, 0, 0), subject_id=1)
    expected = generate_record(subject, list(first.labels), _seed(3, 1, 0, 1))
    np.testing.assert_allclose(first.signal, expected, atol=6e-4)


def test_wfdb_files_match_wfdb_wrsamp(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    import wfdb

    root, _ = dataset
    rec = wfdb.rdrecord(str(root / "records500/00000/00001_hr"), physical=False)
    ours = (root / "records500/00000/00001_hr.dat").read_bytes()
    wfdb.wrsamp("00001_hr", fs=500, units=["mV"] * 12, sig_name=rec.sig_name, d_signal=rec.d_signal,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    assert (tmp_path / "00001_hr.dat").read_bytes() == ours
    ref = wfdb.rdheader(str(tmp_path / "00001_hr"))
    assert rec.checksum == ref.checksum and rec.init_value == ref.init_value
    assert rec.units == ["mV"] * 12 and rec.adc_gain == [1000.0] * 12 and rec.fmt == ["16"] * 12


def test_resume_skips_existing_records(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    root, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    before = _digest(copy)
    (copy / "records500/00000/00005_hr.hea").unlink()
    (copy / "records500/00000/00005_hr.dat").unlink()
    (copy / "ptbxl_database.csv").unlink()
    summary = generate_dataset(copy, subjects=12, records_per_subject=2, seed=3, progress=False)
    assert summary["written"] == 1 and summary["skipped"] == 23
    assert _digest(copy) == before
    with pytest.raises(DataError, match="other parameters"):
        generate_dataset(copy, subjects=12, records_per_subject=2, seed=4, progress=False)


def test_worker_count_does_not_change_output(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = dataset
    summary = generate_dataset(tmp_path / "w2", subjects=12, records_per_subject=2, seed=3, workers=2,
                               progress=False)
    assert summary["written"] == 24
    assert _digest(tmp_path / "w2") == _digest(root)


def test_low_rate_copy(tmp_path: Path) -> None:
    from esi.data.readers import get_reader

    generate_dataset(tmp_path, subjects=1, records_per_subject=2, seed=0, write_lr=True, progress=False)
    refs = get_reader("ptbxl").list_refs(tmp_path, rate="100")
    rec = get_reader("ptbxl").read(refs[0])
    assert rec.fs == 100 and rec.signal.shape == (12, 1000)


def test_cli_synth(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from esi.cli import app

    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "cli"), "--subjects", "2",
                                      "--records-per-subject", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 records of 2 subjects" in result.output
    assert (tmp_path / "cli" / "ptbxl_database.csv").exists()
