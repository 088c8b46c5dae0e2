"""WFDB uploads: names, zips and header references never leave the request folder; bad files are 4xx."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from esi.data.preprocess import PreprocessConfig
from esi.errors import RequestError
from esi.serving.inputs import PayloadTooLarge, RequestLimits
from esi.serving.uploads import check_name, read_uploaded_records, record_windows, stage_files

LIMITS = RequestLimits()


def _uploads(folder: Path, names: list[str] | None = None) -> list[tuple[str, Path]]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return [(n, p) for n, p in zip(names or [p.name for p in files], files, strict=True)]


def _zip(tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


class TestNames:
    @pytest.mark.parametrize("name", ["A0001.hea", "rec/A0001.dat", "./x/y.mat", "a.zip", "JS00001.MAT"])
    def test_allowed(self, name: str) -> None:
        assert ".." not in check_name(name).parts

    @pytest.mark.parametrize("name", ["../A0001.hea", "a/../../b.hea", "/etc/passwd.hea", "C:/x.hea", "~/x.hea",
                                      "a\\b.hea", "x\x00.hea", "", ".hidden.hea", "A0001.exe", "passwd",
                                      "a b.hea"])
    def test_path_tricks_and_foreign_files_are_refused(self, name: str) -> None:
        with pytest.raises(RequestError, match="field 'files'"):
            check_name(name)


class TestStageAndRead:
    def test_real_records_by_name(self, wfdb_dir: Path, tmp_path: Path) -> None:
        root = stage_files(_uploads(wfdb_dir), tmp_path / "req", LIMITS)
        records = read_uploaded_records(root)
        assert [r.record_id for r in records] == ["00005_hr", "00666_hr", "00841_hr", "A0001", "A0002"]
        windows = record_windows(records, PreprocessConfig(), LIMITS)
        assert windows.shape == (5, 12, 5000) and np.isfinite(windows).all()

    def test_zip_with_folders(self, wfdb_dir: Path, tmp_path: Path) -> None:
        members = {f"batch/{p.name}": p.read_bytes() for p in wfdb_dir.iterdir() if p.stem == "A0001"}
        root = stage_files([("records.zip", _zip(tmp_path, members))], tmp_path / "req", LIMITS)
        assert [r.record_id for r in read_uploaded_records(root)] == ["batch/A0001"]

    @pytest.mark.parametrize("member", ["../evil.hea", "/abs/evil.hea", "a/../../evil.hea", "C:\\evil.hea"])
    def test_zip_path_tricks(self, tmp_path: Path, member: str) -> None:
        with pytest.raises(RequestError, match="field 'files'"):
            stage_files([("x.zip", _zip(tmp_path, {member: b"x"}))], tmp_path / "req", LIMITS)
        assert not (tmp_path / "evil.hea").exists() and not Path("/abs/evil.hea").exists()

    def test_zip_symlink_member(self, tmp_path: Path) -> None:
        archive = _zip(tmp_path, {"A.hea": b"A 12 500 5000\n"}, links={"A.dat": "/etc/passwd"})
        with pytest.raises(RequestError, match="symbolic link"):
            stage_files([("x.zip", archive)], tmp_path / "req", LIMITS)

    def test_zip_bomb_and_nested_zip(self, tmp_path: Path) -> None:
        small = RequestLimits(max_bytes=10_000)
        bomb = _zip(tmp_path, {"big.dat": b"\0" * 50_000})  # compresses to ~100 bytes
        with pytest.raises(PayloadTooLarge, match="expands beyond the upload limit"):
            stage_files([("x.zip", bomb)], tmp_path / "req", small)
        with pytest.raises(RequestError, match="nested zip"):
            stage_files([("y.zip", _zip(tmp_path, {"inner.zip": b"PK"}))], tmp_path / "req2", LIMITS)

    def test_not_a_zip_and_duplicates(self, tmp_path: Path, wfdb_dir: Path) -> None:
        junk = tmp_path / "junk"
        junk.write_bytes(b"not a zip")
        with pytest.raises(RequestError, match="not a readable zip"):
            stage_files([("x.zip", junk)], tmp_path / "req", LIMITS)
        hea = wfdb_dir / "A0001.hea"
        with pytest.raises(RequestError, match="sent twice"):
            stage_files([("A0001.hea", hea), ("A0001.hea", hea)], tmp_path / "req3", LIMITS)

    def test_symlinked_upload_is_refused(self, tmp_path: Path) -> None:
        link = tmp_path / "link.hea"
        link.symlink_to("/etc/hostname")
        with pytest.raises(RequestError, match="not a regular file"):
            stage_files([("A.hea", link)], tmp_path / "req", LIMITS)

    def test_header_pointing_outside_is_refused_before_reading(self, tmp_path: Path, wfdb_dir: Path) -> None:
        secret = tmp_path / "secret.dat"
        secret.write_bytes(np.zeros(12 * 5000, "<i2").tobytes())
        text = (wfdb_dir / "00005_hr.hea").read_text().replace("00005_hr.dat", "../secret.dat")
        hea = tmp_path / "evil.hea"
        hea.write_text(text)
        root = stage_files([("evil.hea", hea)], tmp_path / "req", LIMITS)
        with pytest.raises(RequestError, match="outside the upload"):
            read_uploaded_records(root)

    def test_header_whose_signal_file_was_not_sent(self, tmp_path: Path, wfdb_dir: Path) -> None:
        root = stage_files([("00005_hr.hea", wfdb_dir / "00005_hr.hea")], tmp_path / "req", LIMITS)
        with pytest.raises(RequestError, match="was not uploaded"):
            read_uploaded_records(root)

    def test_truncated_signal_file(self, tmp_path: Path, wfdb_dir: Path) -> None:
        short = tmp_path / "short.dat"
        short.write_bytes((wfdb_dir / "00005_hr.dat").read_bytes()[:1000])
        root = stage_files([("00005_hr.hea", wfdb_dir / "00005_hr.hea"), ("00005_hr.dat", short)],
                           tmp_path / "req", LIMITS)
        with pytest.raises(RequestError, match="00005_hr.*truncated"):
            read_uploaded_records(root)

    @pytest.mark.parametrize("header", [b"", b"# only a comment\n", b"\x00\x01binary", b"rec x 500 5000\n"])
    def test_malformed_headers(self, tmp_path: Path, header: bytes) -> None:
        hea = tmp_path / "h.hea"
        hea.write_bytes(header)
        root = stage_files([("rec.hea", hea)], tmp_path / "req", LIMITS)
        with pytest.raises(RequestError, match="field 'files'"):
            read_uploaded_records(root)

    def test_no_header_and_empty_upload(self, tmp_path: Path, wfdb_dir: Path) -> None:
        root = stage_files([("A0001.mat", wfdb_dir / "A0001.mat")], tmp_path / "req", LIMITS)
        with pytest.raises(RequestError, match=r"no \.hea header"):
            read_uploaded_records(root)
        with pytest.raises(RequestError, match="field 'files' is empty"):
            stage_files([], tmp_path / "req2", LIMITS)

    def test_upload_size_limit(self, tmp_path: Path, wfdb_dir: Path) -> None:
        with pytest.raises(PayloadTooLarge, match="the upload is"):
            stage_files(_uploads(wfdb_dir), tmp_path / "req", RequestLimits(max_bytes=50_000))

