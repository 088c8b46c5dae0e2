"""Description generators: the offline composer (grounded, deterministic) and the OpenAI-compatible chat
backend run with the real openai / langchain-openai clients against a local server."""

from __future__ import annotations

import socket

import pytest
from openai_server import FakeOpenAI

from esi.cqa.knowledge_base import CORPUS_DIR, MentionFinder, Passage, open_knowledge_base
from esi.cqa.llm import (
    ConditionContext,
    GenerationRequest,
    OfflineComposer,
    OpenAIChat,
    get_generator,
    split_sentences,
)
from esi.cqa.prompts import PROMPT_VERSION, build_prompt, prompt_inputs
from esi.errors import ConfigError, LLMError


def _passage(cid: str, section: str, text: str, rank: int = 0) -> Passage:
    return Passage(text=text, score=0.5, condition_ids=(cid,), section=section, source=f"corpus/{cid}.md",
                   title=cid, chunk_id=f"{cid}-{section}-{rank}")


RBBB_CRITERIA = _passage("59118001", "Diagnostic criteria",
                         "- The QRS duration is 120 ms or longer in adults.\n"
                         "- Unlike left bundle branch block, the terminal forces point to the right in V1.\n"
                         "- An rsR' complex appears in leads V1 and V2.")
RBBB_WAVE = _passage("59118001", "Waveform features",
                     "- Leads I and V6 show a wide S wave lasting more than 40 ms.\n- Short.")
RBBB_MIMICS = _passage("59118001", "Common mimics",
                       "- Incomplete block with a QRS of 110 ms is a mimic here.")


def _request(*conds: tuple[str, str, str, tuple[Passage, ...]]) -> GenerationRequest:
    return GenerationRequest(signature="|".join(c[0] for c in conds),
                             conditions=tuple(ConditionContext(*c) for c in conds))


# --------------------------------------------------------------------------- offline composer


def test_split_sentences():
    assert split_sentences("- One two three four five.\n- Six. Seven eight.\n\nNine ten") == [
        "One two three four five.", "Six.", "Seven eight.", "Nine ten"]


def test_composer_picks_grounded_sentences_by_rule():
    comp = OfflineComposer(MentionFinder.from_vocabulary())
    req = _request(("59118001", "right bundle branch block", "definite",
                    (RBBB_MIMICS, RBBB_WAVE, RBBB_CRITERIA)))
    text = comp.compose(req)
    # best criteria sentence (a number with a unit ranks first), then the best waveform sentence
    assert text == ("The QRS duration is 120 ms or longer in adults. "
                    "Leads I and V6 show a wide S wave lasting more than 40 ms.")
    assert "left bundle branch block" not in text  # a sentence naming another condition is never used
    assert "mimic" not in text  # only criteria / waveform sections
    assert comp.compose(req) == text  # deterministic
    gen = comp.generate(req)
    assert gen.text == text and gen.requests == 0 and gen.tokens == 0


def test_composer_ignores_passages_of_other_conditions_and_dedupes():
    comp = OfflineComposer(MentionFinder.from_vocabulary(), sentences_per_condition=1)
    af = _passage("164889003", "Diagnostic criteria",
                  "- No P waves are seen and RR intervals vary by 20% or more.")
    req = _request(("164889003", "atrial fibrillation", "definite", (RBBB_CRITERIA, af)),
                   ("59118001", "right bundle branch block", "possible", (RBBB_CRITERIA,)))
    text = comp.compose(req)
    assert text.startswith("No P waves are seen")
    assert text.count("QRS duration") == 1
    # a condition without any passage of its own contributes nothing
    assert comp.compose(_request(("164889003", "atrial fibrillation", "definite", (RBBB_CRITERIA,)))) == ""


def test_composer_on_real_corpus_lifts_sentences_verbatim(small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    comp = OfflineComposer()
    passages = tuple(kb.query("right bundle branch block: diagnostic criteria and waveform features", k=4,
                              condition_id="59118001"))
    text = comp.compose(_request(("59118001", "right bundle branch block", "definite", passages)))
    source = (CORPUS_DIR / "59118001.md").read_text()
    sentences = split_sentences(text.replace(". ", ".\n"))
    assert 1 <= len(sentences) <= 2
    for s in sentences:
        assert s in source
    assert not MentionFinder.from_vocabulary().foreign(text, ["59118001"])


# --------------------------------------------------------------------------- prompt


def test_prompt_carries_conditions_and_passages():
    msgs = build_prompt().format_messages(**prompt_inputs(
        [("59118001", "right bundle branch block", "definite"),
         ("445118002", "left anterior fascicular block", "possible")], [RBBB_CRITERIA]))
    assert [m.type for m in msgs] == ["system", "human"]
    assert "only facts stated in the numbered passages" in msgs[0].content
    assert "- left anterior fascicular block (possible) [445118002]" in msgs[1].content
    assert "[1] (59118001 - Diagnostic criteria) - The QRS duration is 120 ms" in msgs[1].content
    assert PROMPT_VERSION


# --------------------------------------------------------------------------- OpenAI-compatible backend


def _chat(server: FakeOpenAI, key: str, **kw) -> OpenAIChat:
    return OpenAIChat("test-chat", base_url=server.base_url, api_key=key, backoff_s=0.01, **kw)


REQ = _request(("59118001", "right bundle branch block", "definite", (RBBB_CRITERIA, RBBB_WAVE)))


def test_openai_chat_generates_and_counts_tokens():
    with FakeOpenAI(api_key="k1") as server:
        chat = _chat(server, "k1")
        gen = chat.generate(REQ)
    assert gen.text == "Waveform features of right bundle branch block as described in the passages."
    assert gen.requests == 1 and server.requests["/v1/chat/completions"] == 1
    assert gen.input_tokens > 20 and gen.output_tokens == len(gen.text.split())
    assert chat.input_tokens == gen.input_tokens and chat.requests == 1
    body = server.bodies[0]
    assert body["model"] == "test-chat" and body["temperature"] == 0.0
    assert "QRS duration is 120 ms" in body["messages"][1]["content"]
    assert chat.generator_id == "openai:test-chat"


@pytest.mark.parametrize("status", [429, 503])
def test_openai_chat_retries_then_succeeds(status):
    with FakeOpenAI(api_key="k1", fail_first=1, fail_status=status) as server:
        chat = _chat(server, "k1", max_retries=3)
        gen = chat.generate(REQ)
    assert server.requests["/v1/chat/completions"] == 2
    assert gen.requests == 2 and chat.retries == 1
    assert gen.text.startswith("Waveform features of right bundle branch block")


def test_openai_chat_gives_up_after_max_retries():
    with FakeOpenAI(api_key="k1", fail_first=10, fail_status=503) as server:
        chat = _chat(server, "k1", max_retries=2)
        with pytest.raises(LLMError, match=r"kept failing \(HTTP 503\) after 3 attempts"):
            chat.generate(REQ)
    assert server.requests["/v1/chat/completions"] == 3


def test_openai_chat_bad_key_is_a_clear_error():
    with FakeOpenAI(api_key="right-key") as server:
        chat = _chat(server, "wrong-key", max_retries=3)
        with pytest.raises(LLMError) as err:
            chat.generate(REQ)
    msg = str(err.value)
    assert "rejected the API key" in msg and "OPENAI_API_KEY" in msg and server.base_url in msg
    assert server.requests["/v1/chat/completions"] == 1  # a 401 is not retried


def test_openai_chat_unreachable_endpoint_names_the_url():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    chat = OpenAIChat("m", base_url=url, api_key="k", max_retries=1, backoff_s=0.01, timeout_s=5)
    with pytest.raises(LLMError, match=f"cannot reach the LLM endpoint {url}"):
        chat.generate(REQ)
    assert chat.requests == 2


def test_generator_selection(monkeypatch):
    from esi.settings import get_settings

    assert isinstance(get_generator("offline"), OfflineComposer)
    with pytest.raises(ConfigError, match="offline' or 'openai"):
        get_generator("gpt")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            get_generator("openai")
    finally:
        get_settings.cache_clear()


def test_sentence_budget_favours_abnormal_findings():
    comp = OfflineComposer(MentionFinder.from_vocabulary(), max_sentences=5, max_conditions=4)

    def ctx(cid: str, bucket: str = "definite") -> ConditionContext:
        return ConditionContext(cid, cid, bucket)

    sr, norm, rbbb, lafb = "426783006", "164854000", "59118001", "445118002"
    assert comp.sentence_budget([ctx(sr)]) == {sr: 2}
    assert comp.sentence_budget([ctx(sr), ctx(norm)]) == {sr: 2, norm: 2}
    # with an abnormal finding, the normal state gets one sentence; uncertain findings rank after definite
    assert comp.sentence_budget([ctx(sr), ctx(rbbb), ctx(lafb, "possible")]) == {sr: 1, rbbb: 2, lafb: 2}
    many = [ctx(sr), *(ctx(c) for c in ("1", "2", "3", "4"))]
    budget = comp.sentence_budget(many)
    assert sr not in budget and sum(budget.values()) == 5  # at most 4 conditions, at most 5 sentences
