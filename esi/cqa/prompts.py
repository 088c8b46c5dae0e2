"""The prompt that asks a chat model for the waveform description of one condition signature.

``PROMPT_VERSION`` is part of the caption cache key: change it whenever the wording below changes, so cached
descriptions written for the old prompt are not reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.prompts import ChatPromptTemplate

    from esi.cqa.knowledge_base import Passage

PROMPT_VERSION = "waveform-v1"

SYSTEM_PROMPT = """\
You are an expert in clinical electrocardiography. You write the waveform part of a caption for a \
12-lead ECG: which waveform features (intervals, amplitudes, axis, morphology, and the leads where they \
show) the listed conditions produce.

Rules:
- Use only facts stated in the numbered passages. Do not add knowledge of your own.
- Describe only the listed conditions. Never name any other condition or diagnosis.
- For a condition marked possible or probable, describe its features as possible.
- Do not mention age, sex, or the patient. Do not give advice or a differential diagnosis.
- Write 2 to 5 plain sentences, at most 120 words, with numbers and units where the passages give them.
- Answer with the description only: no heading, list, preamble or citation marks."""

USER_PROMPT = """\
Conditions:
{conditions}

Passages:
{passages}

Write the waveform description for these conditions."""


def build_prompt() -> ChatPromptTemplate:
    """The chat prompt (system + user); variables: ``conditions``, ``passages``."""
    from langchain_core.prompts import ChatPromptTemplate

    return ChatPromptTemplate.from_messages([("system", SYSTEM_PROMPT), ("human", USER_PROMPT)])


def format_conditions(conditions: Sequence[tuple[str, str, str]]) -> str:
    """One line per (condition_id, name, certainty bucket)."""
    lines = []
    for cid, name, bucket in conditions:
        qualifier = "" if bucket == "definite" else f" ({bucket})"
        lines.append(f"- {name}{qualifier} [{cid}]")
    return "\n".join(lines)


def format_passages(passages: Sequence[Passage], max_chars: int = 700) -> str:
    """Numbered passages with their document title and section, each cut to ``max_chars``."""
    lines = []
    for i, p in enumerate(passages, start=1):
        text = " ".join(p.text.split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
        where = " - ".join(x for x in (p.title, p.section) if x)
        lines.append(f"[{i}] ({where}) {text}")
    return "\n".join(lines) if lines else "(no passages were found)"


def prompt_inputs(conditions: Sequence[tuple[str, str, str]], passages: Sequence[Passage]) -> dict[str, Any]:
    """The variables of :func:`build_prompt` for one signature."""
    return {"conditions": format_conditions(conditions), "passages": format_passages(passages)}
