"""``esi data compare``: synthetic vs real measurements, the ranked gap table, the LUDB check, warnings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from esi.data import measure
from esi.data.compare import compare_stores, feature_names, gap, ludb_check, parse_conditions
from esi.data.compare.features import beat_measurements, shared_beat
from esi.data.compare.ludb import annotated_intervals
from esi.data.compare.stats import condition_masks
from esi.data.prepare import prepare
from esi.data.store import EcgStore, write_store
from esi.errors import ConfigError, DatasetNotFoundError

BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "real_benchmark"
LUDB = BENCH / "ludb"
# a few LUDB records, sinus rhythm (NORM) and two with atrial fibrillation or RBBB from Georgia / CPSC
REAL_PICK = {"ludb": ["1", "2", "3", "4", "5", "6"], "georgia": ["E00001", "E00002", "E00003", "E00005", "E00007"],
             "cpsc2018": ["A0001", "A0003"]}


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real_root") / "real"
    for folder, names in REAL_PICK.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            for f in (BENCH / folder).glob(f"{name}.*"):
                if f.suffix in (".hea", ".dat", ".mat"):
                    shutil.copy(f, root / folder / f.name)
    out = tmp_path_factory.mktemp("stores") / "real"
    assert prepare("wfdb", root, out, progress=False).complete
    return out


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from esi.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth_root")
    generate_dataset(root, subjects=6, records_per_subject=2, seed=1, progress=False)
    out = tmp_path_factory.mktemp("stores") / "synth"
    assert prepare("ptbxl", root, out, progress=False).complete
    return out


def _copy_store(src: Path, dst: Path, *, scale: float = 1.0, header: dict | None = None) -> Path:
    """The same records as ``src`` with the signals multiplied by ``scale`` (a planted amplitude gap)."""
    store = EcgStore(src)
    rows = store.manifest.drop(columns=["shard", "row"]).to_dict("records")
    signals = store.signals(np.arange(len(store))) * scale
    head = {"preprocess": store.header["preprocess"], **(header or {})}
    return write_store(dst, rows, signals, fs=store.fs, header=head)


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_report_runs_on_small_stores(synth_store: Path, real_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = compare_stores(synth_store, real_store, out, ludb=LUDB, ludb_limit=3)
    for name in ("report.md", "compare.json", "measurements.parquet", "gaps.png", "psd.png", "ludb.png",
                 "conditions.png", "amplitude_hist.png", "distributions.png", "lead_amplitudes.png"):
        assert (out / name).stat().st_size > 0, name
    saved = _strict_json(out / "compare.json")
    assert saved["stores"]["real"]["n_measured"] == len(EcgStore(real_store)) == 13
    assert saved["stores"]["synthetic"]["n_measured"] == 12
    assert saved["preprocessing"]["equal"] and saved["preprocessing"]["warning"] is None
    gaps = result["gaps"]
    assert len(gaps) == len(feature_names())
    ranked = [g["w_norm"] for g in gaps if np.isfinite(g["w_norm"])]
    assert ranked == sorted(ranked, reverse=True) and ranked[0] > 0
    for g in gaps:  # failures are counted, never dropped: measured + failed = every record
        assert g["synthetic"]["n"] + g["synthetic"]["n_failed"] == 12
        assert g["real"]["n"] + g["real"]["n_failed"] == 13
    failed_pr = saved["failures"]["real"].get("pr_ms", {"n_failed": 0})["n_failed"]
    assert next(g for g in gaps if g["feature"] == "pr_ms")["real"]["n_failed"] == failed_pr
    text = (out / "report.md").read_text()
    assert "## Largest gaps" in text and "## Per condition" in text and "LUDB" in text
    first_row = next(line for line in text.split("## Largest gaps", 1)[1].splitlines() if line.startswith("| 1 |"))
    assert f"`{gaps[0]['feature']}`" in first_row
    assert "same preprocessing" in text
    # the real picks hold NORM records (LUDB sinus rhythm) and the conditions block counts them
    assert result["conditions"]["NORM"]["n"]["real"] >= 3
    assert set(result["conditions"]) == {"AF", "RBBB", "LBBB", "1AVB", "NORM"}


def test_a_planted_amplitude_gap_ranks_first(real_store: Path, tmp_path: Path) -> None:
    tripled = _copy_store(real_store, tmp_path / "x3", scale=3.0)
    result = compare_stores(tripled, real_store, tmp_path / "out", plots=False, conditions="NORM")
    top = result["gaps"][:3]
    assert all(g["group"] == "amplitude" for g in top), [(g["feature"], g["w_norm"]) for g in top]
    assert top[0]["synthetic"]["median"] == pytest.approx(3 * top[0]["real"]["median"], rel=0.05)
    by_name = {g["feature"]: g for g in result["gaps"]}
    # scaling leaves the timing alone: rhythm and QRS width do not move
    for name in ("hr_bpm", "rr_cv", "qrs_ms"):
        assert by_name[name]["w_norm"] < 0.1, name
    # and a store compared with itself has no gap at all
    same = compare_stores(real_store, real_store, tmp_path / "same", plots=False, conditions="NORM")
    assert max(g["w_norm"] for g in same["gaps"] if np.isfinite(g["w_norm"])) == 0.0


def test_different_preprocessing_is_warned(real_store: Path, tmp_path: Path) -> None:
    prep = dict(EcgStore(real_store).header["preprocess"], highpass_hz=0.05)
    other = _copy_store(real_store, tmp_path / "hp005", header={"preprocess": prep})
    result = compare_stores(other, real_store, tmp_path / "out", plots=False, conditions="NORM")
    assert not result["preprocessing"]["equal"]
    assert result["preprocessing"]["differences"] == {"highpass_hz": [0.05, 0.5]}
    assert "WARNING" in (tmp_path / "out" / "report.md").read_text()
    assert "highpass_hz" in (tmp_path / "out" / "report.md").read_text()
    unknown = _copy_store(real_store, tmp_path / "none", header={"preprocess": {}})
    result = compare_stores(unknown, real_store, tmp_path / "out2", plots=False, conditions="NORM")
    assert "records no preprocessing" in result["preprocessing"]["warning"]


def test_ludb_check_is_within_a_plausible_error() -> None:
    result = ludb_check(LUDB, limit=6)
    assert result["n_records"] == 6
    for name, bound in (("pr_ms", 40.0), ("qrs_ms", 30.0), ("qt_ms", 60.0)):
        err = result[name]
        assert err["n_measured"] >= 4, name
        assert err["mae_ms"] < bound, (name, err)
        assert 60 < err["annotated_median_ms"] < 450
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        ludb_check(LUDB / "missing")


def test_annotated_intervals_of_a_known_delineation() -> None:
    # two beats at 500 Hz: P 100-150, QRS 180-230, T 300-400; then P 600-650, QRS 690-735, T 800-910
    symbols = ["(", "p", ")", "(", "N", ")", "(", "t", ")", "(", "p", ")", "(", "N", ")", "(", "t", ")"]
    samples = np.array([100, 125, 150, 180, 200, 230, 300, 350, 400, 600, 625, 650, 690, 710, 735, 800, 850, 910])
    got = annotated_intervals(samples, symbols, 500.0)
    assert got["pr_ms"] == pytest.approx(np.median([160, 180]))
    assert got["qrs_ms"] == pytest.approx(np.median([100, 90]))
    assert got["qt_ms"] == pytest.approx(np.median([440, 440]))
    assert np.isnan(annotated_intervals(samples[3:6], symbols[3:6], 500.0)["pr_ms"])  # QRS only: no PR


def test_shared_beat_gives_identical_values_and_restores_measure(real_store: Path) -> None:
    x = EcgStore(real_store).signal(0).astype(np.float64)
    plain = beat_measurements(x, 500.0)
    original = measure.median_beat
    with shared_beat():
        memo = beat_measurements(x, 500.0)
        assert measure.median_beat is not original
    assert measure.median_beat is original
    assert plain == memo and "pr_ms" in plain[0] | plain[1]


def test_gap_is_the_shift_in_real_iqr_units() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, 400)
    q1, q3 = np.percentile(real, [25, 75])
    g = gap(real + 2.0, real)
    assert g["w_norm"] == pytest.approx(2.0 / (q3 - q1), rel=1e-9)
    assert g["ks"] > 0.5
    assert np.isnan(gap(real[:2], real)["w_norm"])  # too few to say


def test_condition_names_and_groups() -> None:
    groups = parse_conditions("AF,1avb,NORM,164917005")
    assert groups["AF"] == ("164889003",) and groups["1AVB"] == ("270492004",) and "164917005" in groups
    with pytest.raises(ConfigError, match="unknown condition 'AVB3'"):
        parse_conditions("AF,AVB3")
    cells = ['{"426783006": 1.0}', '{"426783006": 1.0, "164865005": 1.0}', '{"164889003": 1.0}',
             '{"164889003": 0.35}', "{}"]
    masks = condition_masks(cells, parse_conditions("AF,NORM"))
    assert masks["NORM"].tolist() == [True, False, False, False, False]  # an infarct is not normal
    assert masks["AF"].tolist() == [False, False, True, False, False]  # certainty below 0.5 does not count


def test_cli_compare(synth_store: Path, real_store: Path, tmp_path: Path) -> None:
    from esi.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["data", "compare", str(synth_store), str(real_store), "--out", str(tmp_path / "r"),
                              "--limit", "6", "--conditions", "AF,NORM", "--quiet", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "gap 1:" in res.output and (tmp_path / "r" / "report.md").is_file()
    assert not list((tmp_path / "r").glob("*.png"))
    assert _strict_json(tmp_path / "r" / "compare.json")["stores"]["real"]["n_measured"] == 6
    bad = runner.invoke(app, ["data", "compare", str(tmp_path / "nope"), str(real_store), "--out",
                              str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "no ESI store" in bad.output
    bad = runner.invoke(app, ["data", "compare", str(synth_store), str(real_store), "--out", str(tmp_path / "r3"),
                              "--conditions", "XYZ"])
    assert bad.exit_code == 2 and "unknown condition" in bad.output
