"""Captions: signatures, per-record text, the cached chain (offline and OpenAI-compatible), grounding flags,
plain mode, unmapped statements, the cache under concurrency, and the CLI."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from openai_server import FakeOpenAI
from typer.testing import CliRunner

from esi.cqa.cache import CaptionCache
from esi.cqa.captions import (
    OUTPUT_COLUMNS,
    caption_store,
    certainty_bucket,
    describe_demographics,
    make_signature,
    parse_signature,
)
from esi.cqa.knowledge_base import CORPUS_DIR, open_knowledge_base
from esi.cqa.llm import Generation, OfflineComposer, OpenAIChat
from esi.errors import DataError, KnowledgeBaseError

RBBB, AF, SR, LAFB, NORM = "59118001", "164889003", "426783006", "445118002", "164854000"

RECORDS = [
    {"record_id": "r1", "age": 62, "sex": "M", "conditions": {SR: 1.0, RBBB: 1.0, LAFB: 0.35}},
    {"record_id": "r2", "age": 71.0, "sex": "F", "conditions": {AF: 1.0}},
    {"record_id": "r3", "age": None, "sex": None, "conditions": {SR: 1.0, RBBB: 1.0, LAFB: 0.35}},
    {"record_id": "r4", "age": 300, "sex": "F", "conditions": {}, "label_system": "mimic",
     "report": "Technically difficult study; odd unknown remark", "unmapped": ["odd unknown remark"]},
    {"record_id": "r5", "age": 45, "sex": "M", "conditions": {SR: 1.0, "esi:inferior_mi": 0.6},
     "label_system": "mimic", "report": "Sinus rhythm; possible inferior infarct; zebra pattern foo",
     "unmapped": ["zebra pattern foo"]},
    {"record_id": "r6", "age": 50, "sex": "M", "conditions": {NORM: 1.0, SR: 1.0}},
]


@pytest.fixture()
def store(tmp_path, manifest_store):
    return manifest_store(tmp_path / "store", RECORDS)


# --------------------------------------------------------------------------- pure functions


def test_signatures_roundtrip_with_buckets():
    sig = make_signature({RBBB: 1.0, "esi:inferior_mi": 0.6, LAFB: 0.35})
    assert sig == f"{LAFB}:possible|{RBBB}|esi:inferior_mi:probable"
    assert parse_signature(sig) == [(LAFB, "possible"), (RBBB, "definite"), ("esi:inferior_mi", "probable")]
    assert make_signature({}) == "" and parse_signature("") == []
    assert make_signature({RBBB: 0.9}) == make_signature({RBBB: 1.0})  # same bucket, same description
    assert [certainty_bucket(c) for c in (1.0, 0.8, 0.5, 0.15)] == ["definite", "definite", "probable",
                                                                      "possible"]


@pytest.mark.parametrize("age,sex,text", [
    (62, "M", "62-year-old male"), (62.7, "F", "62-year-old female"),
    (None, "M", "Male patient of unknown age"),
    (float("nan"), None, "Patient of unknown age and sex"), (40, None, "40-year-old patient, sex unknown"),
    (300, "F", "Female patient aged 90 or older"), (0.5, "F", "under-1-year-old female"),
])
def test_demographics(age, sex, text):
    assert describe_demographics(age, sex) == text


# --------------------------------------------------------------------------- the store job


def test_offline_captions_cached_and_rerun_makes_no_calls(store, tmp_path, small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    out, cache = tmp_path / "captions.parquet", tmp_path / "cache.sqlite"
    s1 = caption_store(store, out, kb=kb, generator=OfflineComposer(), cache_path=cache, progress=False)
    df = pd.read_parquet(out)
    assert list(df.columns) == list(OUTPUT_COLUMNS) and len(df) == len(RECORDS) == s1.records
    # r1 and r3 share a signature: 4 distinct non-empty signatures, one generator call each
    assert s1.signatures == 4 and s1.llm_calls == 4 and s1.cache_hits == 0 and s1.no_conditions == 1
    cap = dict(zip(df.record_id, df.caption, strict=True))
    assert cap["r1"].startswith("62-year-old male. ECG shows sinus rhythm, right bundle branch block and "
                                "possible left anterior fascicular block. ")
    # the waveform description: sentences lifted from the documents of the record's own conditions
    description = cap["r1"].split("fascicular block. ", 1)[1]
    docs = {cid: (CORPUS_DIR / f"{cid}.md").read_text() for cid in (SR, RBBB, LAFB)}
    sentences = [x if x.endswith(".") else x + "." for x in description.split(". ")]
    assert 3 <= len(sentences) <= 5
    assert all(any(x in d for d in docs.values()) for x in sentences), sentences
    assert any(x in docs[RBBB] for x in sentences)
    assert cap["r3"].startswith("Patient of unknown age and sex. ECG shows sinus rhythm")
    assert cap["r2"].startswith("71-year-old female. ECG shows atrial fibrillation. ")
    assert cap["r3"].split(". ", 1)[1] == cap["r1"].split(". ", 1)[1]  # same signature, same description
    assert set(df.generator) == {OfflineComposer().generator_id} and set(df.kb_version) == {kb.version}
    assert not df.flagged.any()

    s2 = caption_store(store, out, kb=kb, generator=OfflineComposer(), cache_path=cache, progress=False)
    assert s2.llm_calls == 0 and s2.cache_hits == 4 and s2.tokens == 0
    assert pd.read_parquet(out).equals(df)


def test_unmapped_statements_and_records_without_conditions(store, tmp_path, small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    out = tmp_path / "c.parquet"
    s = caption_store(store, out, kb=kb, generator=OfflineComposer(), cache_path=tmp_path / "c.sqlite",
                      progress=False)
    cap = dict(pd.read_parquet(out)[["record_id", "caption"]].itertuples(index=False))
    assert cap["r4"] == ("Female patient aged 90 or older. No diagnostic statement. "
                         "Report: Technically difficult study; odd unknown remark.")
    assert "probable inferior myocardial infarction" in cap["r5"]
    assert cap["r5"].endswith("Other statements: zebra pattern foo.")  # an unmapped statement is kept
    assert s.unmapped_statements == 2


def test_plain_mode_needs_no_knowledge_base(store, tmp_path):
    out = tmp_path / "plain.parquet"
    s = caption_store(store, out, plain=True, kb_dir=tmp_path / "no_kb", progress=False)
    df = pd.read_parquet(out)
    cap = dict(zip(df.record_id, df.caption, strict=True))
    assert cap["r1"] == ("62-year-old male. ECG shows sinus rhythm, right bundle branch block and possible "
                         "left anterior fascicular block.")
    assert cap["r6"] == "50-year-old male. ECG shows sinus rhythm and normal ECG."
    assert s.llm_calls == 0 and set(df.generator) == {"plain"} and set(df.prompt_version) == {""}
    s = caption_store(store, out, plain=True, limit=2, progress=False)
    assert s.records == 2 and list(pd.read_parquet(out).record_id) == ["r1", "r2"]
    with pytest.raises(KnowledgeBaseError, match="esi kb build"):
        caption_store(store, out, kb_dir=tmp_path / "no_kb", progress=False)


class ScriptedGenerator:
    """A generator with fixed answers per signature (for the grounding check)."""

    generator_id = "scripted-v1"
    max_concurrency = 2

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls = 0

    def generate(self, request) -> Generation:
        self.calls += 1
        return Generation(self.answers.get(request.signature, "Plain QRS complexes of 90 ms."), 10, 5)


def test_grounding_flags_descriptions_naming_absent_conditions(store, tmp_path, small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    rbbb_sig = make_signature(RECORDS[0]["conditions"])
    gen = ScriptedGenerator({
        rbbb_sig: "The QRS is 130 ms with an rSR' in V1; atrial fibrillation is also present.",  # AF: absent
        # a waveform-feature condition (ST depression) does not count as naming a condition
        make_signature({AF: 1.0}): "Irregular RR intervals with ST depression and no P waves.",
    })
    out = tmp_path / "g.parquet"
    s = caption_store(store, out, kb=kb, generator=gen, cache_path=tmp_path / "g.sqlite", progress=False)
    df = pd.read_parquet(out).set_index("record_id")
    assert df.loc["r1", "flagged"] and df.loc["r3", "flagged"]
    assert not df.loc["r2", "flagged"] and not df.loc["r6", "flagged"]
    assert s.flagged == 2 and s.flagged_signatures == [rbbb_sig]
    assert s.tokens == 15 * gen.calls and gen.calls == 4


def test_openai_backend_end_to_end(store, tmp_path, small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    out, cache = tmp_path / "o.parquet", tmp_path / "o.sqlite"
    with FakeOpenAI(api_key="cap-key", fail_first=1, fail_status=429) as server:
        chat = OpenAIChat("test-chat", base_url=server.base_url, api_key="cap-key", max_concurrency=3,
                          backoff_s=0.01)
        s1 = caption_store(store, out, kb=kb, generator=chat, cache_path=cache, progress=False)
        n_requests = server.requests["/v1/chat/completions"]
        assert s1.llm_calls == s1.signatures == 4 and n_requests == 5  # one 429, retried
        assert s1.tokens > 0 and s1.requests == 5
        df = pd.read_parquet(out).set_index("record_id")
        assert df.loc["r1", "caption"].endswith(
            "possible left anterior fascicular block. Waveform features of sinus rhythm, right bundle branch "
            "block, left anterior fascicular block (possible) as described in the passages.")
        assert set(df.generator) == {"openai:test-chat"}
        s2 = caption_store(store, out, kb=kb, generator=chat, cache_path=cache, progress=False)
        assert s2.llm_calls == 0 and server.requests["/v1/chat/completions"] == n_requests
    # the prompt sent for RBBB carried the RBBB passages
    prompts = [b["messages"][1]["content"] for b in server.bodies if "right bundle branch block" in str(b)]
    assert prompts and all("[1] (right bundle branch block - " in p or "[1] (sinus rhythm - " in p
                           or "[1] (left anterior fascicular block - " in p for p in prompts)


def test_openai_bad_key_stops_the_run_with_a_clear_error(store, tmp_path, small_kb, local_embeddings):
    from esi.errors import LLMError

    kb = open_knowledge_base(small_kb[0], local_embeddings)
    with FakeOpenAI(api_key="good") as server:
        chat = OpenAIChat("m", base_url=server.base_url, api_key="bad", backoff_s=0.01)
        with pytest.raises(LLMError, match="OPENAI_API_KEY"):
            caption_store(store, tmp_path / "x.parquet", kb=kb, generator=chat,
                          cache_path=tmp_path / "x.sqlite", progress=False)
    assert not (tmp_path / "x.parquet").exists()


# --------------------------------------------------------------------------- cache


def test_cache_concurrent_inserts_keep_one_entry(tmp_path):
    path = tmp_path / "cache.sqlite"
    errors: list[Exception] = []

    def worker(n: int) -> None:
        try:
            cache = CaptionCache(path)  # each thread its own object, like separate processes
            for i in range(30):
                cache.put(f"sig{i}", "p1", "gen", "kb1", f"text {i} from {n}", 3, 4)
            cache.close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cache = CaptionCache(path)
    assert len(cache) == 30
    hits = cache.get_many([f"sig{i}" for i in range(35)], "p1", "gen", "kb1")
    assert len(hits) == 30 and hits["sig7"].description.startswith("text 7 from ")
    assert cache.get("sig1", "p2", "gen", "kb1") is None  # another prompt version is another key
    assert cache.put("sig1", "p1", "gen", "kb1", "late writer") is False


def test_cache_simultaneous_first_open_waits_for_the_lock(tmp_path):
    """Many jobs opening a new cache at the same instant all get it (SQLite reports the WAL switch and the
    schema write as "locked" without waiting; the cache retries those)."""
    for round_ in range(8):
        path = tmp_path / f"cache{round_}.sqlite"
        start = threading.Barrier(8)
        errors: list[Exception] = []

        def opener(n: int, path=path, start=start, errors=errors) -> None:
            try:
                start.wait()
                cache = CaptionCache(path, timeout_s=20)
                cache.put(f"sig{n}", "p1", "gen", "kb1", f"text {n}")
                cache.close()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=opener, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(CaptionCache(path)) == 8


def test_cache_rejects_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match="not a readable SQLite database") as err:
        CaptionCache(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- CLI


def test_cli_caption_plain(store, tmp_path):
    from esi.cli import app

    out = tmp_path / "cli.parquet"
    res = CliRunner().invoke(app, ["caption", str(store), "--out", str(out), "--plain", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "records: 6, distinct signatures: 4, LLM calls: 0" in res.output
    assert len(pd.read_parquet(out)) == 6
    res = CliRunner().invoke(app, ["caption", str(tmp_path / "nostore"), "--out", str(out), "--plain"])
    assert res.exit_code == 2 and "esi data prepare" in res.output


# --------------------------------------------------------------------------- a real store


def test_captions_of_a_prepared_ptbxl_store(tmp_path, real_dir, small_kb, local_embeddings):
    """The store written by 'esi data prepare' from real PTB-XL records, captioned end to end."""
    from esi.data.prepare import prepare

    store = tmp_path / "ptbxl_store"
    prepare("ptbxl", real_dir / "ptbxl", store, workers=0, progress=False)
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    out = tmp_path / "ptbxl_captions.parquet"
    s = caption_store(store, out, kb=kb, generator=OfflineComposer(), cache_path=tmp_path / "p.sqlite",
                      progress=False)
    df = pd.read_parquet(out).set_index("record_id")
    manifest = pd.read_parquet(store / "manifest.parquet")
    assert s.records == len(manifest) == len(df) > 0
    first = manifest.iloc[0]
    caption = df.loc[str(first.record_id), "caption"]
    # record 1: 56-year-old, PTB-XL sex 1 = female; NORM + SR (+ low voltage)
    assert caption.startswith(f"{int(first.age)}-year-old ")
    assert "sinus rhythm" in caption and "normal ECG" in caption
    assert s.llm_calls == s.signatures > 0 and not df.caption.str.contains("nan").any()


def test_cli_caption_openai_backend_from_settings(store, tmp_path, small_kb, monkeypatch):
    """`esi caption --backend openai` takes the endpoint, key and model from the environment."""
    from esi.cli import app
    from esi.settings import get_settings

    out = tmp_path / "cli_openai.parquet"
    with FakeOpenAI(api_key="env-key") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        monkeypatch.setenv("ESI_LLM_MODEL", "served-model")
        monkeypatch.setenv("ESI_LLM_MAX_CONCURRENCY", "2")
        get_settings.cache_clear()
        try:
            args = ["caption", str(store), "--out", str(out), "--backend", "openai", "--kb-dir",
                    str(small_kb[0]), "--cache", str(tmp_path / "cli.sqlite"), "--quiet"]
            res = CliRunner().invoke(app, args)
        finally:
            get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    assert "distinct signatures: 4, LLM calls: 4" in res.output
    assert {b["model"] for b in server.bodies} == {"served-model"}
    assert set(pd.read_parquet(out).generator) == {"openai:served-model"}


def test_openai_concurrency_is_bounded(store, tmp_path, small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    with FakeOpenAI(api_key="k", delay_s=0.3) as server:
        chat = OpenAIChat("m", base_url=server.base_url, api_key="k", max_concurrency=2)
        s = caption_store(store, tmp_path / "b.parquet", kb=kb, generator=chat,
                          cache_path=tmp_path / "b.sqlite", progress=False)
    assert s.llm_calls == 4 and server.max_in_flight == 2  # parallel, but never more than the bound
