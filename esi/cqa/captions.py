"""Captions for every record of a store: demographics + condition names + a cached waveform description.

The waveform description depends only on the record's *condition signature* (its sorted condition ids, each
with a certainty bucket), so it is generated once per distinct signature by an LCEL chain

    signature -> retrieve the top passages per condition (filtered by the condition id) -> LLM -> description

and cached in SQLite under (signature, prompt version, generator id, knowledge-base version). LLM calls grow
with distinct signatures, not with records; a re-run makes none. Demographics and names are per record.

A grounding check flags a description that names a condition the record does not have. ``plain=True``
writes captions from demographics and label names only (the paper's "without CQA" ablation).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esi.errors import DataError, LLMError

if TYPE_CHECKING:
    from esi.conditions.vocabulary import Vocabulary
    from esi.cqa.knowledge_base import KnowledgeBase, MentionFinder, Passage
    from esi.cqa.llm import DescriptionGenerator, Generation, GenerationRequest

log = logging.getLogger(__name__)

CATEGORY_ORDER = {"rhythm": 0, "conduction": 1, "morphology": 2, "ischaemia": 3, "other": 4}
BUCKETS = ("definite", "probable", "possible")
PASSAGES_PER_CONDITION = 4
OUTPUT_COLUMNS = ("record_id", "caption", "signature", "generator", "prompt_version", "kb_version", "flagged")


# --------------------------------------------------------------------------- signatures


def certainty_bucket(certainty: float) -> str:
    """definite (>= 0.8), probable (>= 0.5) or possible (below)."""
    if certainty >= 0.8:
        return "definite"
    if certainty >= 0.5:
        return "probable"
    return "possible"


def make_signature(conditions: Mapping[str, float]) -> str:
    """Sorted condition ids, each with ``:probable``/``:possible`` unless definite, joined by '|'."""
    parts = []
    for cid in sorted(conditions):
        bucket = certainty_bucket(float(conditions[cid]))
        parts.append(cid if bucket == "definite" else f"{cid}:{bucket}")
    return "|".join(parts)


def parse_signature(signature: str) -> list[tuple[str, str]]:
    """(condition_id, bucket) pairs of a signature."""
    out = []
    for part in filter(None, signature.split("|")):
        # esi:... ids contain a colon themselves: the bucket is the last part only if it is one
        head, _, tail = part.rpartition(":")
        out.append((head, tail) if head and tail in BUCKETS else (part, "definite"))
    return out


# --------------------------------------------------------------------------- per-record text


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def describe_demographics(age: Any, sex: Any) -> str:
    """'62-year-old male', 'Female patient of unknown age', 'Patient of unknown age and sex', ..."""
    a = _number(age)
    s = {"M": "male", "F": "female"}.get(str(sex).strip().upper()[:1]) if sex not in (None, "") else None
    if a is not None and a < 0:
        a = None
    if a is not None and a >= 90:
        age_text = "aged 90 or older"  # PTB-XL writes 300 for anonymised ages over 89
        return f"{s.capitalize()} patient {age_text}" if s else f"Patient {age_text}, sex unknown"
    if a is not None:
        years = "under-1-year-old" if a < 1 else f"{int(a)}-year-old"
        return f"{years} {s}" if s else f"{years} patient, sex unknown"
    return f"{s.capitalize()} patient of unknown age" if s else "Patient of unknown age and sex"


def _join(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def ordered_conditions(conditions: Mapping[str, float], vocab: Vocabulary) -> list[tuple[str, str, str]]:
    """(condition_id, display name, bucket), rhythm first, then conduction, morphology, ischaemia, other."""
    rows = []
    for cid, certainty in conditions.items():
        cond = vocab.get(cid)
        name = cond.name if cond else cid
        category = cond.category if cond else "other"
        bucket = certainty_bucket(float(certainty))
        rows.append((CATEGORY_ORDER.get(category, 5), BUCKETS.index(bucket), name.lower(), cid, name, bucket))
    return [(cid, name, bucket) for *_, cid, name, bucket in sorted(rows)]


def condition_sentence(conditions: Mapping[str, float], vocab: Vocabulary) -> str:
    """'ECG shows sinus rhythm, right bundle branch block and possible left anterior fascicular block.'"""
    names = [name if bucket == "definite" else f"{bucket} {name}"
             for _, name, bucket in ordered_conditions(conditions, vocab)]
    return f"ECG shows {_join(names)}." if names else ""


def compose_caption(demographics: str, conditions: Mapping[str, float], vocab: Vocabulary, description: str,
                    report: str | None, unmapped: Sequence[str]) -> str:
    """The caption of one record. Unmapped statements are never dropped: they stay as report text."""
    parts = [demographics.rstrip(".") + "."]
    if conditions:
        parts.append(condition_sentence(conditions, vocab))
        if description:
            parts.append(description)
        if unmapped:
            parts.append("Other statements: " + "; ".join(s.strip().rstrip(".") for s in unmapped) + ".")
    else:
        parts.append("No diagnostic statement.")
        text = (report or "").strip() or "; ".join(unmapped)
        if text:
            parts.append("Report: " + " ".join(text.split()).rstrip(".") + ".")
    return " ".join(p for p in parts if p)


# --------------------------------------------------------------------------- the chain


class CaptionChain:
    """The LCEL chain signature -> retrieval -> generator, with per-condition retrieval memoised."""

    def __init__(self, kb: KnowledgeBase, generator: DescriptionGenerator, vocab: Vocabulary,
                 passages_per_condition: int = PASSAGES_PER_CONDITION) -> None:
        from langchain_core.runnables import RunnableLambda

        self.kb = kb
        self.generator = generator
        self.vocab = vocab
        self.k = passages_per_condition
        self._passages: dict[str, tuple[Passage, ...]] = {}
        self.chain = (RunnableLambda(self.request, name="retrieve")
                      | RunnableLambda(self.generator.generate, name="generate"))

    @staticmethod
    def query_text(name: str) -> str:
        return f"{name}: diagnostic criteria and waveform features"

    def prefetch(self, condition_ids: Sequence[str]) -> None:
        """Retrieve the passages of many conditions at once (one embedding call)."""
        todo = [cid for cid in dict.fromkeys(condition_ids) if cid not in self._passages]
        if not todo:
            return
        queries = [self.query_text(self._name(cid)) for cid in todo]
        found = self.kb.query_many(queries, k=self.k, condition_ids=todo)
        for cid, passages in zip(todo, found, strict=True):
            self._passages[cid] = tuple(passages)
        missing = [cid for cid in todo if not self._passages[cid]]
        if missing:
            # no chunk is tagged with these conditions: fall back to the nearest passages of any document
            for cid, passages in zip(missing, self.kb.query_many(
                    [self.query_text(self._name(c)) for c in missing], k=3), strict=True):
                self._passages[cid] = tuple(passages)
            log.warning("no knowledge-base passage is tagged with %d condition(s) (%s): using the nearest "
                        "passages instead", len(missing), ", ".join(missing[:5]))

    def _name(self, cid: str) -> str:
        cond = self.vocab.get(cid)
        return cond.name if cond else cid

    def _category(self, cid: str) -> str:
        cond = self.vocab.get(cid)
        return cond.category if cond else "other"

    def request(self, signature: str) -> GenerationRequest:
        """Retrieval step: the conditions of a signature with their passages."""
        from esi.cqa.llm import ConditionContext, GenerationRequest

        pairs = parse_signature(signature)
        self.prefetch([cid for cid, _ in pairs])
        # the order a reader expects: rhythm, conduction, morphology, ischaemia, other; definite first
        pairs.sort(key=lambda p: (CATEGORY_ORDER.get(self._category(p[0]), 5), BUCKETS.index(p[1]),
                                  self._name(p[0]).lower()))
        ctx = tuple(ConditionContext(cid, self._name(cid), bucket, self._passages[cid])
                    for cid, bucket in pairs)
        return GenerationRequest(signature=signature, conditions=ctx)

    def invoke(self, signature: str) -> Generation:
        """Description of one signature (no cache)."""
        return self.chain.invoke(signature)


# --------------------------------------------------------------------------- the store job


@dataclass
class CaptionSummary:
    """What a caption run did."""

    records: int = 0
    signatures: int = 0
    llm_calls: int = 0
    cache_hits: int = 0
    tokens: int = 0
    flagged: int = 0
    seconds: float = 0.0
    path: str = ""
    generator: str = ""
    kb_version: str = ""
    no_conditions: int = 0
    unmapped_statements: int = 0
    requests: int = 0
    flagged_signatures: list[str] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _manifest_rows(store: Any, limit: int | None) -> list[dict[str, Any]]:
    m = store.manifest
    if limit is not None:
        m = m.iloc[:limit]
    for col in ("record_id", "conditions"):
        if col not in m.columns:
            raise DataError(f"the store manifest has no {col!r} column",
                            path=str(store.path / "manifest.parquet"), field=col,
                            fix="re-create the store with 'esi data prepare'")
    rows = []
    has_unmapped = "unmapped" in m.columns
    for i, rec in enumerate(m.to_dict("records")):
        try:
            conditions = json.loads(rec["conditions"]) if rec["conditions"] else {}
        except (TypeError, json.JSONDecodeError) as exc:
            raise DataError(f"row {i}: 'conditions' is not JSON", path=str(store.path / "manifest.parquet"),
                            field="conditions", fix="re-create the store with 'esi data prepare'") from exc
        if has_unmapped:
            raw = rec.get("unmapped")
            unmapped = json.loads(raw) if isinstance(raw, str) and raw else list(raw or [])
        else:  # an older store: harmonise again to recover the statements the vocabulary does not know
            from esi.conditions.harmonize import harmonize

            labels = json.loads(rec["labels"]) if isinstance(rec.get("labels"), str) and rec["labels"] else {}
            unmapped = harmonize(rec.get("label_system") or "none", labels, rec.get("report")).unmapped
        report = rec.get("report")
        rows.append({"record_id": str(rec["record_id"]), "age": rec.get("age"), "sex": rec.get("sex"),
                     "conditions": {str(k): float(v) for k, v in conditions.items()},
                     "report": None if report is None or (isinstance(report, float) and math.isnan(report))
                     else str(report), "unmapped": [str(u) for u in unmapped]})
    return rows


def caption_store(store_path: str | Path, out_path: str | Path, *, kb_dir: str | Path | None = None,
                  backend: str | None = None, plain: bool = False, cache_path: str | Path | None = None,
                  progress: bool = True, limit: int | None = None,
                  generator: DescriptionGenerator | None = None, kb: KnowledgeBase | None = None,
                  ) -> CaptionSummary:
    """Write a caption for every record of a store to ``out_path`` (parquet, atomic).

    Args:
        store_path: an ESI store (only header.json and manifest.parquet are read).
        out_path: the captions parquet: record_id, caption, signature, generator, prompt_version,
            kb_version, flagged.
        kb_dir: the knowledge base (default ``settings.kb_dir``; build it with 'esi kb build').
        backend: 'offline' | 'openai' (default ``settings.llm``).
        plain: demographics + label names only; no knowledge base, no LLM.
        cache_path: SQLite description cache (default ``settings.caption_cache``).
        limit: only the first ``limit`` records.
        generator, kb: ready-made objects (tests, benchmarks); override ``backend`` / ``kb_dir``.
    """
    import pandas as pd
    from tqdm import tqdm

    from esi.conditions.vocabulary import load_vocabulary
    from esi.cqa.cache import CaptionCache
    from esi.cqa.prompts import PROMPT_VERSION
    from esi.data.store import EcgStore, atomic_write_parquet
    from esi.settings import get_settings

    t0 = time.perf_counter()
    settings = get_settings()
    store = EcgStore(store_path)
    vocab = load_vocabulary()
    rows = _manifest_rows(store, limit)
    summary = CaptionSummary(records=len(rows), path=str(out_path))
    signatures = [make_signature(r["conditions"]) for r in rows]
    distinct = sorted({s for s in signatures if s})
    summary.signatures = len(distinct)
    summary.no_conditions = sum(1 for s in signatures if not s)
    summary.unmapped_statements = sum(len(r["unmapped"]) for r in rows)

    descriptions: dict[str, str] = {}
    flagged_sigs: set[str] = set()
    if plain:
        generator_id, prompt_version, kb_version = "plain", "", ""
    else:
        from esi.cqa.knowledge_base import MentionFinder, open_knowledge_base
        from esi.cqa.llm import get_generator

        kb = kb or open_knowledge_base(kb_dir)
        generator = generator or get_generator(backend)
        generator_id, prompt_version, kb_version = generator.generator_id, PROMPT_VERSION, kb.version
        cache = CaptionCache(cache_path or settings.caption_cache)
        cached = cache.get_many(distinct, prompt_version, generator_id, kb_version)
        summary.cache_hits = len(cached)
        descriptions.update({s: c.description for s, c in cached.items()})
        todo = [s for s in distinct if s not in cached]
        if todo:
            descriptions.update(_generate(todo, kb, generator, vocab, cache, prompt_version, kb_version,
                                          summary, progress))
        cache.close()
        finder = MentionFinder.from_vocabulary(vocab)
        flagged_sigs = {s for s in distinct if _is_flagged(finder, s, descriptions.get(s, ""))}
        summary.flagged_signatures = sorted(flagged_sigs)
    summary.generator, summary.kb_version = generator_id, kb_version

    out_rows = []
    bar = tqdm(total=len(rows), desc="captions", unit="rec", disable=not progress, mininterval=0.5)
    for r, sig in zip(rows, signatures, strict=True):
        caption = compose_caption(describe_demographics(r["age"], r["sex"]), r["conditions"], vocab,
                                  descriptions.get(sig, ""), r["report"], r["unmapped"])
        flagged = sig in flagged_sigs
        out_rows.append((r["record_id"], caption, sig, generator_id, prompt_version, kb_version, flagged))
        bar.update(1)
    bar.close()
    summary.flagged = sum(1 for row in out_rows if row[-1])
    df = pd.DataFrame(out_rows, columns=list(OUTPUT_COLUMNS))
    atomic_write_parquet(out_path, df)
    summary.seconds = time.perf_counter() - t0
    log.info("captioned %d records (%d signatures, %d LLM calls, %d cache hits, %d tokens, %d flagged) "
             "in %.1f s (%.0f records/s) -> %s", summary.records, summary.signatures, summary.llm_calls,
             summary.cache_hits, summary.tokens, summary.flagged, summary.seconds, summary.records_per_s,
             out_path)
    return summary


def _is_flagged(finder: MentionFinder, signature: str, description: str) -> bool:
    foreign = finder.foreign(description, [cid for cid, _ in parse_signature(signature)])
    if foreign:
        log.info("description of %s names condition(s) the records do not have: %s", signature,
                 ", ".join(f"{found!r} ({cid})" for cid, found in foreign))
    return bool(foreign)


def _generate(todo: list[str], kb: KnowledgeBase, generator: DescriptionGenerator, vocab: Vocabulary,
              cache: Any, prompt_version: str, kb_version: str, summary: CaptionSummary,
              progress: bool) -> dict[str, str]:
    """Generate (and cache, one by one as they finish) the descriptions of uncached signatures."""
    from tqdm import tqdm

    chain = CaptionChain(kb, generator, vocab)
    chain.prefetch(sorted({cid for s in todo for cid, _ in parse_signature(s)}))
    out: dict[str, str] = {}
    failures: Counter[str] = Counter()
    first_error: Exception | None = None
    pending: list[tuple[str, str, str, str, str, int, int]] = []
    last_flush = time.monotonic()
    bar = tqdm(total=len(todo), desc=f"descriptions ({generator.generator_id})", unit="sig",
               disable=not progress)
    config = {"max_concurrency": generator.max_concurrency}
    for i, result in chain.chain.batch_as_completed(todo, config=config, return_exceptions=True):
        bar.update(1)
        if isinstance(result, Exception):
            failures[type(result).__name__] += 1
            if first_error is None:
                first_error = result
            if isinstance(result, LLMError):
                break  # the endpoint refuses or is down: stop; what is cached so far is kept for the re-run
            continue
        summary.llm_calls += 1
        summary.requests += result.requests
        summary.tokens += result.tokens
        out[todo[i]] = result.text
        pending.append((todo[i], prompt_version, generator.generator_id, kb_version, result.text,
                        result.input_tokens, result.output_tokens))
        if len(pending) >= 256 or time.monotonic() - last_flush > 2.0:
            # written in batches (one transaction each), so a crash loses at most a few seconds of work
            cache.put_many(pending)
            pending, last_flush = [], time.monotonic()
    cache.put_many(pending)
    bar.close()
    if first_error is not None:
        done = len(out)
        if isinstance(first_error, LLMError):
            raise LLMError(f"{first_error} ({done} of {len(todo)} descriptions were generated and cached; "
                           "a re-run continues from there)") from first_error
        raise first_error
    return out
