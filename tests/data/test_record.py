import numpy as np
import pytest

from esi.data.record import LEADS, EcgRecord, canonical_lead, normalize_age, normalize_sex, reorder_leads
from esi.errors import DataError


class TestLeadNames:
    @pytest.mark.parametrize("name,expected", [("AVR", "aVR"), ("avr", "aVR"), ("aVF", "aVF"), ("v1", "V1"),
                                               ("i", "I"), ("III", "III"), ("vx", None), ("MLII", None)])
    def test_canonical(self, name: str, expected: str | None) -> None:
        assert canonical_lead(name) == expected

    def test_mimic_order_is_reordered_by_name(self) -> None:
        mimic = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
        signal = np.stack([np.full(4, i, dtype=np.float32) for i in range(12)])
        out = reorder_leads(signal, mimic)
        # aVL (stored at position 5) must come before aVF (stored at 4)
        assert out[4, 0] == 5 and out[5, 0] == 4
        assert [out[i, 0] for i in range(12)] == [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]

    def test_upper_case_and_extra_channels(self) -> None:
        names = ["i", "ii", "iii", "AVR", "AVL", "AVF", "v1", "v2", "v3", "v4", "v5", "v6", "vx", "vy", "vz"]
        signal = np.arange(15, dtype=np.float32)[:, None].repeat(3, axis=1)
        out = reorder_leads(signal, names)
        assert out.shape == (12, 3)
        assert out[:, 0].tolist() == list(range(12))

    def test_eleven_leads_names_the_missing_one(self) -> None:
        names = list(LEADS[:11])
        with pytest.raises(DataError, match="missing standard lead.*V6"):
            reorder_leads(np.zeros((11, 5)), names, path="x.hea")

    def test_duplicate_lead(self) -> None:
        names = list(LEADS)
        names[1] = "I"
        with pytest.raises(DataError, match="appears twice"):
            reorder_leads(np.zeros((12, 5)), names)


def test_normalizers() -> None:
    assert normalize_sex("Male") == "M" and normalize_sex(1) == "F" and normalize_sex(0.0) == "M"
    assert normalize_sex("Unknown") is None and normalize_sex(float("nan")) is None
    assert normalize_age("74") == 74.0 and normalize_age("Unknown") is None and normalize_age(None) is None


def test_record_shape_checked() -> None:
    with pytest.raises(DataError, match="expected \\(12, n\\)"):
        EcgRecord(record_id="x", signal=np.zeros((11, 10)), fs=500, source="t")
    rec = EcgRecord(record_id="x", signal=np.zeros((12, 1000), dtype=np.float64), fs=500, source="t")
    assert rec.signal.dtype == np.float32 and rec.duration_s == 2.0
