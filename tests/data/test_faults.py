"""The fault corpus (tests/fixtures/faults/make_faults.py) through `esi data prepare`, one case per fault class.

Each case asserts the exit code, that the damaged record is a reject row whose reason names the file at fault
and says what is wrong, that the good records beside it are in the store, and records found = stored +
rejected (nothing silently dropped).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from esi.cli import app
from esi.data.store import EcgStore

_SPEC = importlib.util.spec_from_file_location(
    "make_faults", Path(__file__).parents[1] / "fixtures" / "faults" / "make_faults.py")
make_faults = importlib.util.module_from_spec(_SPEC)
sys.modules["make_faults"] = make_faults  # dataclasses look their module up there
_SPEC.loader.exec_module(make_faults)
FAULTS = [fault for fault, _ in make_faults.catalogue()]


def _match(record_ids: list[str], suffix: str) -> list[str]:
    return [r for r in record_ids if r == suffix or r.endswith("/" + suffix)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, make_faults.Fault]:
    return {f.name: f for f in make_faults.make_faults(tmp_path_factory.mktemp("faults"))}


def test_corpus_is_large_enough() -> None:
    assert len(FAULTS) >= 30 and len({f.name for f in FAULTS}) == len(FAULTS)
    assert {f.source for f in FAULTS} == {"wfdb", "challenge", "ptbxl", "mimic", "icbeb"}


@pytest.mark.parametrize("name", [f.name for f in FAULTS])
def test_prepare_over_fault(name: str, corpus: dict, tmp_path: Path) -> None:
    fault = corpus[name]
    out = tmp_path / "store"
    res = CliRunner().invoke(app, ["data", "prepare", "--source", fault.source, "--root", fault.root,
                                   "--out", str(out), "--quiet", "--workers", "0", *fault.args])
    assert res.exit_code == fault.exit_code, res.output
    assert "Traceback" not in res.output
    if fault.exit_code:
        message = " ".join(res.output.split())  # rich/typer may wrap long lines
        assert message.startswith("error:") or "error:" in message
        for word in fault.reason:
            assert word in message, (word, res.output)
        assert not (out / "header.json").exists() or not json.loads((out / "header.json").read_text())["complete"]
        return
    store = EcgStore(out)
    ids = store.manifest["record_id"].astype(str).tolist()
    rejects = store.rejects()
    found = store.header["plan"]["n_refs"]
    assert len(ids) + len(rejects) == found, "every record found is stored or rejected"
    for good in fault.good:
        assert _match(ids, good), f"good record {good} missing from the store: {ids}"
    if fault.reject:
        hit = rejects[[bool(_match([r], fault.reject)) for r in rejects["record_id"].astype(str)]]
        assert len(hit) == 1, rejects.to_dict("records")
        reason = hit["reason"].iat[0]
        for word in fault.reason:
            assert word in reason, (word, reason)
        assert not _match(ids, fault.reject)
    else:
        assert rejects.empty, rejects.to_dict("records")
    for rid, flag in fault.flags.items():
        row = store.manifest[[bool(_match([r], rid)) for r in ids]]
        assert len(row) == 1 and flag in json.loads(row["flags"].iat[0]), row.to_dict("records")


def test_latin1_comments_are_decoded_not_replaced(corpus: dict, tmp_path: Path) -> None:
    """The latin-1 fallback keeps 'ö' (never U+FFFD) and the ages beside it."""
    from esi.data.readers.header import load_header

    header = load_header(Path(corpus["latin1_comments"].root) / "bad.hea")
    assert "header_latin1" in header.flags
    text = " ".join(header.comments)
    assert "Herzrhythmusst\u00f6rung" in text and "\ufffd" not in text


def test_age_out_of_range_is_null_in_the_store_and_validation_reports_it(corpus: dict, tmp_path: Path) -> None:
    from esi.data.prepare import prepare
    from esi.validation.config import default_thresholds
    from esi.validation.suites import manifest_frame

    out = tmp_path / "store"
    prepare("ptbxl", corpus["ptbxl_age_300"].root, out, progress=False)
    store = EcgStore(out)
    m = store.manifest.set_index("record_id")
    assert m.loc["ptbxl/9001", "age"] != m.loc["ptbxl/9001", "age"]  # NaN: null, not 300
    frame = manifest_frame(store.manifest, store.header, default_thresholds()).set_index("record_id")
    assert frame.loc["ptbxl/9001", "age_recorded"] == 300.0 and frame.loc["ptbxl/1", "age_recorded"] == 56.0


def test_refused_signal_paths_are_never_opened(corpus: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal file outside the record's folder is refused before anything opens it."""
    import numpy as np

    from esi.data.readers.base import load_wfdb
    from esi.errors import RecordReadError

    opened: list[str] = []
    real_fromfile = np.fromfile
    monkeypatch.setattr(np, "fromfile", lambda f, *a, **k: opened.append(str(f)) or real_fromfile(f, *a, **k))
    for name in ("signal_path_parent", "signal_path_absolute"):
        with pytest.raises(RecordReadError, match="outside the record's folder"):
            load_wfdb(str(Path(corpus[name].root) / "bad"))
    assert opened == []
