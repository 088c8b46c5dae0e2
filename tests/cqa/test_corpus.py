"""Checks on the Cardio Query Assistant knowledge base (esi/cqa/corpus/*.md).

Every condition in esi/conditions/data/conditions.csv must have exactly one markdown document whose
front matter agrees with the CSV, whose body has the five fixed sections in order, and whose
"Diagnostic criteria" / "Waveform features" sections are concrete enough for the offline caption
composer (bullets written as full sentences, with numbers and units for ECG conditions).

Only the standard library and pytest are used; the parsing helpers below are deliberately local
to this test so it does not depend on the loader in esi/cqa/.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSV_PATH = ROOT / "esi" / "conditions" / "data" / "conditions.csv"
CORPUS_DIR = ROOT / "esi" / "cqa" / "corpus"

SECTIONS = [
    "Definition",
    "Diagnostic criteria",
    "Waveform features",
    "Leads where it shows",
    "Common mimics",
]
BULLET_SECTIONS = ("Diagnostic criteria", "Waveform features", "Common mimics")
SENTENCE_SECTIONS = ("Diagnostic criteria", "Waveform features")
FRONT_MATTER_KEYS = ("condition_id", "name", "abbreviation", "category")
CATEGORIES = {"rhythm", "conduction", "morphology", "ischaemia", "other"}
NEEDS_NUMBERS = {"rhythm", "conduction", "morphology", "ischaemia"}

# A number followed by one of the units the captions use. "s" must stand alone ("3 s"), so that
# lead names such as "V5 shows" do not count.
NUMBER_WITH_UNIT = re.compile(
    r"\d+(?:\.\d+)?\s*(?:ms|mV|bpm|degrees|°|Hz|%|s)(?![A-Za-z0-9])",
)
MIN_WORDS, MAX_WORDS = 140, 380  # the brief asks for about 150-350 words per document
DUPLICATE_MIN_WORDS = 12  # sentences this long or longer may not appear in two documents


# --------------------------------------------------------------------------- parsing helpers


def doc_filename(condition_id: str) -> str:
    return condition_id.replace(":", "_") + ".md"


def load_conditions() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def parse_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split '---' delimited `key: value` front matter from the body."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise ValueError("document does not start with '---'")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration as exc:
        raise ValueError("front matter is not closed by '---'") from exc
    meta: dict[str, str] = {}
    for line in lines[1:end]:
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"front matter line without ':': {line!r}")
        key = key.strip()
        if key in meta:
            raise ValueError(f"duplicate front matter key {key!r}")
        meta[key] = value.strip().strip('"').strip("'")
    return meta, "\n".join(lines[end + 1 :])


def parse_body(body: str) -> tuple[str | None, list[tuple[str, str]]]:
    """Return the H1 title and the (heading, text) pairs of the H2 sections, in order."""
    title = None
    sections: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("# "):
            if title is not None:
                raise ValueError("more than one H1 heading")
            title = line[2:].strip()
        elif line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif line.startswith("#"):
            raise ValueError(f"unexpected heading level: {line!r}")
        elif sections:
            sections[-1][1].append(line)
    return title, [(name, "\n".join(text).strip()) for name, text in sections]


def bullets(section_text: str) -> list[str]:
    return [ln.strip()[2:].strip() for ln in section_text.splitlines() if ln.strip().startswith("- ")]


def split_sentences(text: str) -> list[str]:
    """Rough sentence split: bullets and lines first, then '. ' boundaries."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("- "):
            line = line[2:]
        if not line:
            continue
        out.extend(s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", line) if s.strip())
    return out


def normalise(sentence: str) -> str:
    words = re.findall(r"[a-z0-9']+", sentence.lower())
    return " ".join(words)


class Doc:
    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.meta, self.body = parse_front_matter(self.text)
        self.title, section_list = parse_body(self.body)
        self.section_names = [name for name, _ in section_list]
        self.sections = dict(section_list)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def conditions() -> list[dict[str, str]]:
    rows = load_conditions()
    assert rows, "conditions.csv is empty"
    return rows


@pytest.fixture(scope="module")
def docs() -> dict[str, Doc]:
    assert CORPUS_DIR.is_dir(), f"missing corpus directory {CORPUS_DIR}"
    return {p.name: Doc(p) for p in sorted(CORPUS_DIR.glob("*.md"))}


@pytest.fixture(scope="module")
def docs_by_id(conditions, docs) -> dict[str, Doc]:
    by_id = {}
    for row in conditions:
        name = doc_filename(row["condition_id"])
        if name in docs:
            by_id[row["condition_id"]] = docs[name]
    return by_id


# --------------------------------------------------------------------------- tests


def test_condition_ids_unique(conditions):
    ids = [row["condition_id"] for row in conditions]
    assert len(ids) == len(set(ids)), "duplicate condition_id in conditions.csv"
    files = [doc_filename(i) for i in ids]
    assert len(files) == len(set(files)), "two condition_ids map to the same file name"


def test_every_condition_has_one_document(conditions, docs):
    missing = [row["condition_id"] for row in conditions if doc_filename(row["condition_id"]) not in docs]
    assert not missing, f"conditions without a document: {missing}"


def test_no_orphan_or_duplicate_documents(conditions, docs):
    expected = {doc_filename(row["condition_id"]) for row in conditions}
    orphans = sorted(set(docs) - expected)
    assert not orphans, f"documents for conditions not in the CSV: {orphans}"
    seen = defaultdict(list)
    for name, doc in docs.items():
        seen[doc.meta.get("condition_id")].append(name)
    dupes = {cid: names for cid, names in seen.items() if len(names) > 1}
    assert not dupes, f"condition_id claimed by more than one document: {dupes}"


def test_front_matter_matches_csv(conditions, docs_by_id):
    problems = []
    for row in conditions:
        doc = docs_by_id.get(row["condition_id"])
        if doc is None:
            continue  # reported by test_every_condition_has_one_document
        for key in FRONT_MATTER_KEYS:
            if key not in doc.meta:
                problems.append(f"{doc.path.name}: missing {key}")
            elif doc.meta[key] != row[key]:
                problems.append(f"{doc.path.name}: {key}={doc.meta[key]!r}, CSV has {row[key]!r}")
        if row["category"] not in CATEGORIES:
            problems.append(f"CSV category {row['category']!r} for {row['condition_id']} is unknown")
    assert not problems, "\n".join(problems)


def test_title_matches_name(docs_by_id):
    bad = [
        f"{d.path.name}: title {d.title!r} vs name {d.meta.get('name')!r}"
        for d in docs_by_id.values()
        if d.title is None or d.title.lower() != d.meta.get("name", "").lower()
    ]
    assert not bad, "\n".join(bad)


def test_sections_present_in_order(docs):
    bad = [f"{name}: {doc.section_names}" for name, doc in docs.items() if doc.section_names != SECTIONS]
    assert not bad, "sections must be exactly " + repr(SECTIONS) + ":\n" + "\n".join(bad)


def test_sections_not_empty_and_bulleted(docs):
    problems = []
    for name, doc in docs.items():
        for section in SECTIONS:
            if not doc.sections.get(section, "").strip():
                problems.append(f"{name}: empty section {section!r}")
        for section in BULLET_SECTIONS:
            if not bullets(doc.sections.get(section, "")):
                problems.append(f"{name}: section {section!r} has no bullet points")
        definition = split_sentences(doc.sections.get("Definition", ""))
        if not 2 <= len(definition) <= 4:
            problems.append(f"{name}: Definition has {len(definition)} sentences (want 2-4)")
    assert not problems, "\n".join(problems)


def test_composer_sections_are_full_sentences(docs):
    """The caption composer lifts these bullets verbatim, so each must stand alone as a sentence."""
    problems = []
    for name, doc in docs.items():
        for section in SENTENCE_SECTIONS:
            for item in bullets(doc.sections.get(section, "")):
                if not item[:1].isupper() and not item[:1].isdigit():
                    problems.append(f"{name} [{section}]: does not start with a capital: {item!r}")
                if not item.endswith("."):
                    problems.append(f"{name} [{section}]: does not end with a full stop: {item!r}")
                if len(item.split()) < 5:
                    problems.append(f"{name} [{section}]: too short to be self-contained: {item!r}")
    assert not problems, "\n".join(problems)


def test_ecg_conditions_give_numbers_with_units(docs_by_id):
    missing = []
    for doc in docs_by_id.values():
        if doc.meta.get("category") not in NEEDS_NUMBERS:
            continue
        text = doc.sections.get("Diagnostic criteria", "") + "\n" + doc.sections.get("Waveform features", "")
        if not NUMBER_WITH_UNIT.search(text):
            missing.append(doc.path.name)
    assert not missing, f"no number with a unit in criteria/waveform sections: {missing}"


def test_document_length(docs):
    bad = []
    for name, doc in docs.items():
        n = len(re.findall(r"\S+", doc.body))
        if not MIN_WORDS <= n <= MAX_WORDS:
            bad.append(f"{name}: {n} words")
    assert not bad, f"documents outside {MIN_WORDS}-{MAX_WORDS} words:\n" + "\n".join(bad)


def test_no_sentence_shared_between_documents(docs):
    owners: dict[str, set[str]] = defaultdict(set)
    for name, doc in docs.items():
        for section in SECTIONS:
            for sentence in split_sentences(doc.sections.get(section, "")):
                key = normalise(sentence)
                if len(key.split()) >= DUPLICATE_MIN_WORDS:
                    owners[key].add(name)
    shared = {s: sorted(n) for s, n in owners.items() if len(n) > 1}
    assert not shared, "identical sentences in several documents:\n" + "\n".join(
        f"{names}: {s}" for s, names in sorted(shared.items())
    )


def test_parser_helpers():
    meta, body = parse_front_matter(
        "---\ncondition_id: esi:x\nname: thing\nabbreviation: T\ncategory: other\n---\n# Thing\n## A\n- b.\n"
    )
    assert meta == {"condition_id": "esi:x", "name": "thing", "abbreviation": "T", "category": "other"}
    title, sections = parse_body(body)
    assert title == "Thing" and sections == [("A", "- b.")]
    assert doc_filename("esi:normal_ecg") == "esi_normal_ecg.md"
    assert NUMBER_WITH_UNIT.search("QRS of 120 ms") and NUMBER_WITH_UNIT.search("above 0.5 mV")
    assert NUMBER_WITH_UNIT.search("more than 3 s") and NUMBER_WITH_UNIT.search("25% of R")
    assert not NUMBER_WITH_UNIT.search("leads V5 show it")
