"""Fixtures derived from the real records: MIMIC-IV-ECG layout, ICBEB original form, corrupted records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="session")
def mimic_root(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MIMIC-IV-ECG layout built from two real PTB-XL 500 Hz records, stored in MIMIC's lead order."""
    import pandas as pd
    import wfdb

    root = tmp_path_factory.mktemp("mimic")
    statements = (real_dir / "mimic_statements" / "statements_dev.txt").read_text().splitlines()
    rows, measures = [], []
    for k, ecg in enumerate(["00005", "00841"]):
        sub = {"00005": "00000", "00841": "00000"}[ecg]
        rec = wfdb.rdrecord(str(real_dir / "ptbxl" / "records500" / sub / f"{ecg}_hr"))
        names = [n.upper().replace("AV", "aV") for n in rec.sig_name]
        sig = rec.p_signal[:, [names.index(n) for n in MIMIC_ORDER]]
        subject, study = 10000032 + k, 40689238 + k
        rel = f"files/p1000/p{subject}/s{study}"
        (root / rel).mkdir(parents=True)
        wfdb.wrsamp(str(study), fs=500, units=["mV"] * 12, sig_name=MIMIC_ORDER, p_signal=sig,
                    fmt=["16"] * 12, write_dir=str(root / rel))
        rows.append({"subject_id": subject, "study_id": study, "file_name": study, "ecg_time": "2180-07-23",
                     "path": f"{rel}/{study}"})
        m = {"subject_id": subject, "study_id": study, "cart_id": 6848296}
        m.update({f"report_{i}": statements[k * 3 + i] for i in range(3)})
        measures.append(m)
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(measures).to_csv(root / "machine_measurements.csv", index=False)
    return root


@pytest.fixture(scope="session")
def icbeb_root(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CPSC 2018 records in original form (.mat with an ECG struct + REFERENCE.csv), from real records."""
    import wfdb
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("icbeb")
    lines = ["Recording,First_label,Second_label,Third_label"]
    labels = {"A0001": "5", "A0002": "1", "A0003": "2", "A0004": "2,8"}
    for name, lab in labels.items():
        rec = wfdb.rdrecord(str(real_dir / "cpsc2018" / name))
        age = next(c.split(":")[1].strip() for c in rec.comments if c.startswith("Age"))
        sex = next(c.split(":")[1].strip() for c in rec.comments if c.startswith("Sex"))
        savemat(str(root / f"{name}.mat"), {"ECG": {"sex": sex, "age": float(age), "data": rec.p_signal.T}})
        parts = lab.split(",") + [""] * (3 - len(lab.split(",")))
        lines.append(",".join([name, *parts]))
    (root / "REFERENCE.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def corrupt_root(real_dir: Path, tmp_path: Path) -> Path:
    """A WFDB folder with one good record and four broken ones: truncated .dat, 11-signal header,
    unknown storage format, and a header whose .dat is missing."""
    src = real_dir / "ptbxl" / "records500" / "00000"
    root = tmp_path / "corrupt"
    root.mkdir()
    header = (src / "00005_hr.hea").read_text()
    data = (src / "00005_hr.dat").read_bytes()

    def write(name: str, text: str, payload: bytes | None) -> None:
        (root / f"{name}.hea").write_text(text.replace("00005_hr", name))
        if payload is not None:
            (root / f"{name}.dat").write_bytes(payload)

    write("good", header, data)
    write("truncated", header, data[: len(data) // 3])
    lines = header.splitlines()
    first = lines[0].split()
    first[1] = "11"
    eleven = "\n".join([" ".join(first), *[ln for ln in lines[1:] if "V6" not in ln.split()[-1:]]]) + "\n"
    # keep the 12-channel .dat: the reader must still refuse an 11-lead header
    write("eleven", eleven, data)
    write("badformat", header.replace("_hr.dat 16 ", "_hr.dat 999 "), data)
    write("nodat", header, None)
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
