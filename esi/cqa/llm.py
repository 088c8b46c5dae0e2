"""Generators of the waveform description for one condition signature.

- :class:`OfflineComposer` (the embedded default): deterministic, no network. It writes the description only
  from sentences of the retrieved passages' "Diagnostic criteria" and "Waveform features" sections, picked by
  a fixed rule, so every sentence can be traced to the knowledge base.
- :class:`OpenAIChat`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama) through
  ``langchain_openai.ChatOpenAI``, with retries and exponential backoff on 429/5xx/timeouts, and token/call
  accounting from the response usage.

Both take a :class:`GenerationRequest` (the conditions of one signature with their passages) and return a
:class:`Generation`. ``generator_id`` is part of the caption cache key.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from esi.errors import ConfigError, LLMError

if TYPE_CHECKING:
    from esi.cqa.knowledge_base import MentionFinder, Passage

log = logging.getLogger(__name__)

CRITERIA_SECTIONS = ("Diagnostic criteria", "Waveform features")
NORMAL_STATE_IDS = frozenset({"426783006", "164854000"})  # sinus rhythm, normal ECG
_NUMBER_UNIT = re.compile(r"\d+(?:\.\d+)?\s*(?:ms|mV|mm|bpm|degrees|°|Hz|%|s)(?![A-Za-z0-9])")
_LEAD = re.compile(r"\b(?:V[1-6]|aV[RLF]|I{1,3})\b")


@dataclass(frozen=True)
class ConditionContext:
    """One condition of a signature: id, display name, certainty bucket, and its retrieved passages."""

    condition_id: str
    name: str
    bucket: str  # definite | probable | possible
    passages: tuple[Passage, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a generator needs for one signature."""

    signature: str
    conditions: tuple[ConditionContext, ...]

    def all_passages(self) -> list[Passage]:
        """The passages of all conditions, without repeats, in condition order."""
        seen: dict[str, Passage] = {}
        for c in self.conditions:
            for p in c.passages:
                seen.setdefault(p.chunk_id or p.text, p)
        return list(seen.values())


@dataclass
class Generation:
    """A generated description with its cost."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 1  # HTTP requests made (retries included); 0 for the offline composer
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class DescriptionGenerator(Protocol):
    """What the caption chain needs from a backend."""

    generator_id: str
    max_concurrency: int

    def generate(self, request: GenerationRequest) -> Generation: ...


# --------------------------------------------------------------------------- offline composer


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage: bullet by bullet, then at '. ' before a capital."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("- ", "* ")):
            line = line[2:].strip()
        if not line or line.startswith("#"):
            continue
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", line) if s.strip())
    return out


class OfflineComposer:
    """A deterministic, grounded description writer (no language model, no network).

    Rule, per condition of the signature (at most ``max_conditions``, sentences allotted by
    :meth:`sentence_budget`): take the sentences of its own passages in the "Diagnostic criteria" and
    "Waveform features" sections (for user documents, any section, but only sentences that name the
    condition); drop sentences that name another condition (see :meth:`MentionFinder.foreign`); rank by
    (has a number with a unit, names a lead, retrieval rank, order in the passage); take the best criteria
    sentence, then the best waveform sentence, then the best of the rest. A sentence already used for another
    condition is not repeated. Text is lifted verbatim except for a trailing full stop.
    """

    VERSION = 2

    def __init__(self, finder: MentionFinder | None = None, *, sentences_per_condition: int = 2,
                 max_conditions: int = 4, max_sentences: int = 5) -> None:
        self._finder = finder
        self.sentences_per_condition = sentences_per_condition
        self.max_conditions = max_conditions
        self.max_sentences = max_sentences
        self.max_concurrency = 1
        self.generator_id = (f"offline-composer-v{self.VERSION}-s{sentences_per_condition}-c{max_conditions}"
                             f"-m{max_sentences}")

    @property
    def finder(self) -> MentionFinder:
        if self._finder is None:
            from esi.cqa.knowledge_base import MentionFinder

            self._finder = MentionFinder.from_vocabulary()
        return self._finder

    def _candidates(self, cond: ConditionContext, allowed: set[str]) -> list[tuple[tuple, str, str]]:
        out = []
        for rank, p in enumerate(cond.passages):
            if cond.condition_id not in p.condition_ids:
                continue
            corpus_doc = p.section in CRITERIA_SECTIONS
            for pos, sentence in enumerate(split_sentences(p.text)):
                if len(sentence.split()) < 5:
                    continue
                if not corpus_doc and cond.condition_id not in self.finder.condition_ids(sentence):
                    continue  # user document: only sentences about this very condition
                if self.finder.foreign(sentence, allowed):
                    continue
                key = (not _NUMBER_UNIT.search(sentence), not _LEAD.search(sentence), not corpus_doc,
                       rank, pos)
                out.append((key, p.section, sentence))
        return sorted(out)

    def sentence_budget(self, conditions: Sequence[ConditionContext]) -> dict[str, int]:
        """Sentences per condition id: one each first (definite, then abnormal ones first), then a second
        for abnormal conditions while ``max_sentences`` allows; the normal state (sinus rhythm, normal ECG)
        gets a second sentence only when nothing abnormal is present."""
        order = {"definite": 0, "probable": 1, "possible": 2}
        ranked = sorted(conditions,
                        key=lambda c: (c.condition_id in NORMAL_STATE_IDS, order.get(c.bucket, 3)))
        ranked = ranked[:self.max_conditions]
        budget = {c.condition_id: 0 for c in ranked}
        left = self.max_sentences
        only_normal = all(c.condition_id in NORMAL_STATE_IDS for c in ranked)
        for rnd in range(self.sentences_per_condition):
            for c in ranked:
                if left <= 0:
                    return budget
                if rnd > 0 and c.condition_id in NORMAL_STATE_IDS and not only_normal:
                    continue
                budget[c.condition_id] += 1
                left -= 1
        return budget

    def compose(self, request: GenerationRequest) -> str:
        """The description (may be empty when no passage gives a usable sentence)."""
        allowed = {c.condition_id for c in request.conditions}
        budget = self.sentence_budget(request.conditions)
        used: set[str] = set()
        picked: list[str] = []
        for cond in request.conditions:  # the text keeps the request's (reading) order
            n = budget.get(cond.condition_id, 0)
            if n <= 0:
                continue
            candidates = [c for c in self._candidates(cond, allowed) if c[2].lower() not in used]
            chosen: list[tuple[tuple, str, str]] = []
            for section in CRITERIA_SECTIONS:  # one per section first, then the best of the rest
                best = next((c for c in candidates if c[1] == section), None)
                if best and len(chosen) < n:
                    chosen.append(best)
            for c in candidates:
                if len(chosen) >= n:
                    break
                if c not in chosen:
                    chosen.append(c)
            for _, _, sentence in chosen:
                used.add(sentence.lower())
                picked.append(sentence if sentence.endswith((".", "!", "?")) else sentence + ".")
        return " ".join(picked)

    def generate(self, request: GenerationRequest) -> Generation:
        return Generation(text=self.compose(request), requests=0)


# --------------------------------------------------------------------------- OpenAI-compatible chat


class OpenAIChat:
    """Chat completions from an OpenAI-compatible endpoint via ``langchain_openai.ChatOpenAI``.

    Retries (``max_retries``) with exponential backoff and jitter on 429, 5xx, timeouts and connection
    errors; a ``Retry-After`` header is honoured. Counts requests, retries and tokens (thread-safe).
    """

    def __init__(self, model: str | None = None, *, base_url: str | None = None, api_key: str | None = None,
                 max_concurrency: int | None = None, max_retries: int | None = None,
                 timeout_s: float | None = None, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 temperature: float = 0.0, max_tokens: int = 300) -> None:
        from langchain_openai import ChatOpenAI

        from esi.cqa.prompts import build_prompt
        from esi.settings import get_settings

        s = get_settings()
        self.model = model or s.llm_model
        self.base_url = base_url or s.openai_base_url
        api_key = api_key or s.openai_api_key
        if not api_key:
            raise ConfigError("the openai caption backend needs an API key; fix: set OPENAI_API_KEY (and "
                              "OPENAI_BASE_URL for vLLM/Ollama/other endpoints), or use --backend offline")
        self.max_concurrency = max_concurrency or s.llm_max_concurrency
        self.max_retries = s.llm_max_retries if max_retries is None else max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.url = self.base_url or "https://api.openai.com/v1"
        # The client's own retries are off: this class retries, so it can count and log each attempt.
        self.llm = ChatOpenAI(model=self.model, base_url=self.base_url, api_key=api_key,
                              timeout=timeout_s or s.llm_timeout_s, max_retries=0, temperature=temperature,
                              max_tokens=max_tokens)
        self.chain = build_prompt() | self.llm
        self.generator_id = f"openai:{self.model}"
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.input_tokens = 0
        self.output_tokens = 0

    def _delay(self, attempt: int, exc: Exception) -> float:
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return min(self.max_backoff_s, float(retry_after))
            except ValueError:
                pass
        base = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return base * (0.5 + random.random() / 2)  # jitter, so parallel workers do not retry in step

    def invoke(self, inputs: dict[str, Any]) -> tuple[str, int, int, int]:
        """Run the prompt chain once with retries: (text, input tokens, output tokens, requests)."""
        import openai

        requests = 0
        for attempt in range(self.max_retries + 1):
            requests += 1
            with self._lock:
                self.requests += 1
            try:
                msg = self.chain.invoke(inputs)
            except openai.AuthenticationError as exc:
                raise LLMError(f"the LLM endpoint {self.url} rejected the API key (401 Unauthorized); "
                               "fix: set OPENAI_API_KEY (or ESI_OPENAI_API_KEY) to a valid key for this "
                               "endpoint") from exc
            except openai.PermissionDeniedError as exc:
                raise LLMError(f"the LLM endpoint {self.url} refused access to model {self.model!r} (403); "
                               "fix: use a key allowed to call it, or set ESI_LLM_MODEL") from exc
            except openai.NotFoundError as exc:
                raise LLMError(f"the LLM endpoint {self.url} does not serve model {self.model!r} (404); "
                               "fix: set ESI_LLM_MODEL to a model it serves, and check OPENAI_BASE_URL "
                               "(it usually ends in /v1)") from exc
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as exc:
                status = getattr(exc, "status_code", None)
                what = f"HTTP {status}" if status else type(exc).__name__
                if attempt >= self.max_retries:
                    if isinstance(exc, openai.APIConnectionError) and not status:
                        raise LLMError(f"cannot reach the LLM endpoint {self.url} ({exc}) after {requests} "
                                       "attempts; fix: check OPENAI_BASE_URL and that the server is up, or "
                                       "use --backend offline") from exc
                    raise LLMError(f"the LLM endpoint {self.url} kept failing ({what}) after {requests} "
                                   "attempts; fix: retry later, lower ESI_LLM_MAX_CONCURRENCY or raise "
                                   "ESI_LLM_MAX_RETRIES") from exc
                delay = self._delay(attempt, exc)
                with self._lock:
                    self.retries += 1
                log.warning("LLM request failed (%s); retry %d/%d in %.2f s", what, attempt + 1,
                            self.max_retries, delay)
                time.sleep(delay)
                continue
            except openai.APIStatusError as exc:
                raise LLMError(f"the LLM endpoint {self.url} answered HTTP {exc.status_code}: {exc.message}"
                               ) from exc
            text = msg.content if isinstance(msg.content, str) else " ".join(
                part.get("text", "") if isinstance(part, dict) else str(part) for part in msg.content)
            usage = getattr(msg, "usage_metadata", None) or {}
            n_in, n_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
            with self._lock:
                self.input_tokens += n_in
                self.output_tokens += n_out
            return " ".join(text.split()), n_in, n_out, requests
        raise AssertionError("unreachable")  # pragma: no cover

    def generate(self, request: GenerationRequest) -> Generation:
        from esi.cqa.prompts import prompt_inputs

        conditions = [(c.condition_id, c.name, c.bucket) for c in request.conditions]
        text, n_in, n_out, requests = self.invoke(prompt_inputs(conditions, request.all_passages()))
        if not text:
            raise LLMError(f"the LLM endpoint {self.url} returned an empty description for "
                           f"{request.signature!r}")
        return Generation(text=text, input_tokens=n_in, output_tokens=n_out, requests=requests)


def get_generator(backend: str | None = None, **kwargs: Any) -> DescriptionGenerator:
    """The configured generator: 'offline' (default, ESI_LLM) or 'openai'."""
    from esi.settings import get_settings

    backend = backend or get_settings().llm
    if backend == "offline":
        return OfflineComposer(**kwargs)
    if backend == "openai":
        return OpenAIChat(**kwargs)
    raise ConfigError(f"unknown LLM backend {backend!r}; fix: use 'offline' or 'openai' "
                      "(ESI_LLM / --backend)")
