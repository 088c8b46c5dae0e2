"""Caption benchmark: distinct condition signatures, LLM calls with the signature cache versus one per record,
and captions per second with the offline generator.

Records are synthetic (``esi.data.synthetic``: subjects with age/sex-dependent chronic conditions and
per-record rhythm/ectopy/repolarisation findings, several records per subject, PTB-XL SCP labels harmonised
to the vocabulary). Only a manifest is written (captioning reads no signals).

    .venv/bin/python bench/captions.py [--records 20000] [--kb-dir DIR] [--work DIR] [--json OUT]

The knowledge base is built (incrementally) in ``--kb-dir`` (default $ESI_HOME/kb) from the project corpus.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def synthetic_manifest_store(path: Path, n_records: int, records_per_subject: int = 5, seed: int = 0) -> dict:
    """Write a manifest-only store of ``n_records`` synthetic records; returns label statistics."""
    import numpy as np

    from esi.conditions.harmonize import harmonize
    from esi.data.store import EcgStore, write_store
    from esi.data.synthetic import generate_labels, make_subject

    rng = np.random.default_rng(seed)
    rows = []
    subject = None
    for i in range(n_records):
        if i % records_per_subject == 0:
            subject = make_subject(rng, i // records_per_subject)
        labels = generate_labels(rng, subject)
        conditions = harmonize("scp", labels).conditions
        rows.append({
            "record_id": f"syn{i:06d}", "source": "synthetic", "subject_id": str(subject.subject_id),
            "age": float(subject.age), "sex": subject.sex, "fold": 1 + (subject.subject_id % 10),
            "label_system": "scp", "labels": json.dumps(labels, sort_keys=True),
            "conditions": json.dumps(conditions, sort_keys=True), "report": None, "path": "",
            "original_fs": 500.0, "original_n_samples": 5000, "window": 0, "padded_samples": 0,
            "nan_fraction": 0.0, "nan_filled": False, "shard": 0, "row": i, "unmapped": "[]",
        })
    df = EcgStore(write_store(path, rows)).manifest
    n_conds = df["conditions"].map(lambda s: len(json.loads(s)))
    return {"records": len(df), "subjects": int(df["subject_id"].nunique()),
            "mean_conditions_per_record": round(float(n_conds.mean()), 2),
            "records_without_conditions": int((n_conds == 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--records-per-subject", type=int, default=5)
    parser.add_argument("--kb-dir", type=Path, default=None, help="knowledge base (default $ESI_HOME/kb)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the store, cache and captions")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from esi.cqa.captions import caption_store
    from esi.cqa.knowledge_base import build_knowledge_base, open_knowledge_base
    from esi.cqa.llm import OfflineComposer

    work = args.work or Path(tempfile.mkdtemp(prefix="esi_bench_captions_"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {"work": str(work)}

    t0 = time.perf_counter()
    figures["data"] = synthetic_manifest_store(work / "store", args.records, args.records_per_subject,
                                               args.seed)
    figures["data"]["seconds"] = round(time.perf_counter() - t0, 1)

    kb_summary = build_knowledge_base(args.kb_dir, progress=True)
    kb = open_knowledge_base(args.kb_dir)
    figures["kb"] = {"chunks": kb_summary.chunks, "embedded_now": kb_summary.added,
                     "seconds": round(kb_summary.seconds, 1), "embedding": kb_summary.embedding_id}

    cache = work / "cache.sqlite"
    cache.unlink(missing_ok=True)
    runs = {}
    for name, kwargs in (("cold", {}), ("warm", {}), ("plain", {"plain": True})):
        gen = None if kwargs.get("plain") else OfflineComposer()
        s = caption_store(work / "store", work / f"captions_{name}.parquet", kb=None if gen is None else kb,
                          generator=gen, cache_path=cache, progress=False, **kwargs)
        runs[name] = {"seconds": round(s.seconds, 2), "captions_per_s": round(s.records_per_s, 1),
                      "llm_calls": s.llm_calls, "cache_hits": s.cache_hits, "flagged": s.flagged}
        sigs, records, no_conditions = s.signatures, s.records, s.no_conditions
    figures["captions"] = runs
    with_conditions = records - no_conditions
    figures["llm_calls"] = {
        "records": records, "distinct_signatures": sigs,
        "with_cache": runs["cold"]["llm_calls"], "rerun_with_cache": runs["warm"]["llm_calls"],
        "one_per_record": with_conditions,
        "reduction_factor": round(with_conditions / max(1, runs["cold"]["llm_calls"]), 1),
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
