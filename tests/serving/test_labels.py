"""Label resolution: vocabulary ids, names, abbreviations and synonyms; free-text prompts; label files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esi.conditions.vocabulary import load_vocabulary
from esi.errors import ConfigError, RequestError
from esi.serving.labels import default_labels, load_label_file, resolve_condition, resolve_labels

AF = "164889003"


class TestResolve:
    @pytest.mark.parametrize("text", [AF, "atrial fibrillation", "Atrial  Fibrillation", "AF", "af", "AFIB"])
    def test_by_id_name_abbreviation_synonym(self, text: str) -> None:
        assert resolve_condition(text).condition_id == AF

    def test_unknown_label_names_the_field_and_suggests(self) -> None:
        with pytest.raises(RequestError, match=r"field 'labels': 'atrial fibrilationn' is not a condition.*did you "
                                               r"mean 'atrial fibrillation'"):
            resolve_condition("atrial fibrilationn")

    def test_default_is_the_vocabulary(self) -> None:
        labels = default_labels()
        assert labels.ids == load_vocabulary().ids() and labels.kind == "vocabulary"
        assert all(lab.prompts and lab.prompts[0] == lab.name for lab in labels.labels)

    def test_request_labels_and_prompts(self) -> None:
        labels = resolve_labels(["AF", AF, "RBBB"], ["a very wide QRS"])
        assert labels.ids == [AF, "59118001", "prompt_0"]  # AF named twice is kept once
        assert labels.names[-1] == "a very wide QRS" and labels.labels[-1].prompts == ("a very wide QRS",)
        assert resolve_labels(None, None).kind == "vocabulary"
        assert resolve_labels([], ["x"]).kind == "prompts"

    def test_corpus_sentences_join_the_prompts(self) -> None:
        prompts = resolve_labels([AF]).labels[0].prompts
        assert len(prompts) > 3, "the knowledge corpus should add criteria sentences"

    def test_digest_changes_with_the_prompts(self) -> None:
        assert resolve_labels([AF]).digest() != resolve_labels([], ["atrial fibrillation"]).digest()


class TestLabelFile:
    def test_text_file(self, label_file: Path) -> None:
        labels = load_label_file(label_file)
        assert labels.ids == [AF, "426783006", "59118001"] and labels.kind == "file"

    def test_json_custom_labels(self, tmp_path: Path) -> None:
        path = tmp_path / "l.json"
        path.write_text(json.dumps({"chagas": ["Chagas cardiomyopathy", "RBBB with LAFB"], AF: None}))
        labels = load_label_file(path)
        assert labels.ids == ["chagas", AF] and labels.labels[0].prompts == ("Chagas cardiomyopathy",
                                                                             "RBBB with LAFB")

    @pytest.mark.parametrize(("content", "suffix", "match"), [
        ("AF\nnot a condition\n", ".txt", r"line 2: 'not a condition' is not a condition"),
        ("# nothing\n", ".txt", "names no label"),
        ("{not json", ".json", "not valid JSON"),
        ('{"bad id!": ["x"]}', ".json", "needs an id of letters"),
        ('{"x": []}', ".json", "non-empty list of prompt strings"),
    ])
    def test_bad_files(self, tmp_path: Path, content: str, suffix: str, match: str) -> None:
        path = tmp_path / f"labels{suffix}"
        path.write_text(content)
        with pytest.raises(ConfigError, match=match):
            load_label_file(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="no such file"):
            load_label_file(tmp_path / "nope.txt")
