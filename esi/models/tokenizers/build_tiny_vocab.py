"""Build esi/models/tokenizers/tiny/vocab.txt, the WordPiece vocabulary of the tiny random BERT used in tests.

Run from the repository root: ``python esi/models/tokenizers/build_tiny_vocab.py``. Deterministic: the
same corpus gives the same file. Contents, in order: BERT special tokens; single characters (lowercase
letters, digits, punctuation) and their ``##`` continuations, so any lowercase ASCII text tokenises without
[UNK]; common suffix pieces; words of ECG captions (demographics, leads, waveform terms); and the most
frequent words of the project's knowledge corpus (esi/cqa/corpus) and condition names
(esi/conditions/data/conditions.csv).
"""

from __future__ import annotations

import csv
import re
import string
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).resolve().parent / "tiny" / "vocab.txt"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SUFFIXES = [
    "s",
    "es",
    "ed",
    "ing",
    "al",
    "ally",
    "ic",
    "ion",
    "ions",
    "ly",
    "er",
    "ers",
    "or",
    "ity",
    "ia",
    "ar",
    "ous",
    "ive",
    "ment",
    "ness",
    "ation",
    "ial",
    "ical",
    "ent",
    "ant",
    "ence",
    "ance",
    "ium",
    "um",
    "ure",
]
CAPTION_WORDS = """
a an the of in and or with without to from by at on for as is are was were be has have shows showing
show seen male female man woman patient patients subject year years old aged age unknown sex ecg
ecgs electrocardiogram recording tracing 12-lead lead leads i ii iii avr avl avf v1 v2 v3 v4 v5 v6
mv ms bpm hz sec second seconds rhythm rate heart beat beats wave waves p q r s t u qrs st pr qt qtc
rr interval intervals segment segments axis complex complexes duration amplitude morphology
elevation depression inversion inverted upright flat flattened prolonged short shortened wide
widened narrow notched slurred peaked tall deep broad absent present normal abnormal left right
anterior posterior inferior lateral septal anteroseptal anterolateral inferolateral high low atrial
ventricular sinus junctional supraventricular premature contraction contractions ectopic escape
paced pacing block bundle branch fascicular hemiblock degree first second third complete incomplete
av atrioventricular fibrillation flutter tachycardia bradycardia arrhythmia hypertrophy enlargement
infarction myocardial ischemia ischemic injury repolarization depolarization conduction delay
deviation voltage pattern signs consistent likely possible probable suggests suggestive findings
finding changes change nonspecific non-specific old recent acute m-shaped rsr rs qr qs notch pattern
pathological pathologic poor progression transition zone strain
""".split()


def _words(text: str) -> list[str]:
    # Split like BERT's basic tokenizer: lowercase, words of letters/digits, punctuation on its own.
    return re.findall(r"[a-z0-9]+", text.lower())


def build() -> list[str]:
    """The vocabulary, one token per entry, special tokens first."""
    pieces = list(SPECIAL) + list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces += [f"##{c}" for c in string.ascii_lowercase + string.digits] + [f"##{s}" for s in SUFFIXES]
    vocab = list(dict.fromkeys(pieces))  # a token listed twice would give two ids to one string
    counts: Counter[str] = Counter()
    for path in sorted((ROOT / "esi" / "cqa" / "corpus").glob("*.md")):
        counts.update(_words(path.read_text(encoding="utf-8")))
    conditions = ROOT / "esi" / "cqa" / "data" / "conditions.csv"
    if conditions.exists():
        with conditions.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                counts.update(_words(f"{row.get('name', '')} {row.get('synonyms', '')}") * 3)
    words = [w for word in CAPTION_WORDS for w in _words(word)]
    words += [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 2][:900]
    words += [str(n) for n in range(0, 101)]
    seen = set(vocab)
    for w in words:
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    return vocab


if __name__ == "__main__":
    tokens = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    print(f"wrote {len(tokens)} tokens to {OUT}")
