"""Zero-shot score rules on real ECGs: plain cosine against the contrast with a normal sinus-rhythm caption.

For each checkpoint, scores the real benchmark's pretraining part (the development set the rule was chosen on,
never the reported figure) and its evaluation part under both rules (caption prompts, or ``--schemes
caption,names``), and prints one table of the headline mean AUC (AF, RBBB, LBBB, 1AVB; a condition with fewer
than 3 positives in a part is left out of that part's mean) and the per-condition AUCs:

    python bench/zero_shot_rules.py --store .esi/bench/real_transfer/real_store \\
        "make run=.esi/run/pretrain/model.pt" "6 epochs=.esi/bench/real_transfer/v2_e6/model.pt"

A checkpoint that was pretrained on the pretraining part (``--mix-real``) has no clean development figure; its
pretraining-part cells are marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from esi.data.real_split import HEADLINE, REAL_ROOT


def _parts(store_path: Path) -> tuple:
    from esi.data.store import EcgStore
    from esi.evaluation.real import real_benchmark

    store = EcgStore(store_path)
    return store, {part: real_benchmark(store, part=part) for part in ("pretrain", "eval")}


def _score(model, store, bench, kb_dir, cache, scheme: str) -> dict[str, dict[str, float]]:
    from esi.evaluation.metrics import macro_auc
    from esi.evaluation.prompts import build_prompts
    from esi.evaluation.zeroshot import SCORE_RULES, class_embeddings, rule_scorer

    emb = cache.get(model, store, bench.indices, kind="embedding", batch_size=64, progress=False)
    cp = build_prompts(bench, scheme, kb_dir=kb_dir)
    cemb = class_embeddings(model, cp.texts, cp.weights)
    out = {}
    for rule in SCORE_RULES:
        per = macro_auc(bench.y, rule_scorer(model, bench, rule, scheme, kb_dir=kb_dir)(emb, cemb),
                        bench.class_names).per_class
        head = {HEADLINE[c]: per[c] for c in HEADLINE if c in per}
        out[rule] = {"mean": float(np.mean(list(head.values()))), **head}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="LABEL=PATH of a checkpoint (model.pt)")
    ap.add_argument("--store", type=Path, default=Path(".esi/bench/real_transfer/real_store"),
                    help=f"the real benchmark prepared as a store (esi data prepare --source wfdb --root {REAL_ROOT})")
    ap.add_argument("--schemes", default="caption", help="prompt schemes: caption, names or both (comma-separated)")
    ap.add_argument("--kb", type=Path, default=None, help="knowledge base of the caption prompts (default: corpus)")
    args = ap.parse_args()
    from esi.evaluation.embed import EmbeddingCache
    from esi.evaluation.provenance import pretraining_provenance
    from esi.models.checkpoint import load_model

    store, benches = _parts(args.store)
    ids = store.manifest["record_id"].astype(str).to_numpy()
    for part, b in benches.items():
        pos = {HEADLINE[c]: int(b.y[:, i].sum()) for i, c in enumerate(b.class_names) if c in HEADLINE}
        print(f"{part} part: {len(b.indices)} records, headline positives {pos}")
    cache = EmbeddingCache(args.store.parent / "cache_zero_shot_rules")
    names = list(HEADLINE.values())
    rows = []
    for item in args.checkpoints:
        label, _, path = item.rpartition("=")
        model = load_model(path or item)
        prov = pretraining_provenance(getattr(model, "checkpoint_extra", None), store)
        mixed = bool(prov.record_ids & set(ids[benches["pretrain"].indices]))
        for scheme in [x.strip() for x in args.schemes.split(",") if x.strip()]:
            parts = {p: _score(model, store, b, args.kb, cache, scheme) for p, b in benches.items()}
            rows.append((label or path, scheme, mixed, parts))
        print(f"scored {label or path}", flush=True)
    print("\n| model | prompts | part | rule | mean | " + " | ".join(names) + " |")
    print("|---|---|---|---|---|" + "---|" * len(names))
    for label, scheme, mixed, parts in rows:
        for part, rules in parts.items():
            for rule, r in rules.items():
                tag = " (trained on it)" if mixed and part == "pretrain" else ""
                cells = " | ".join(f"{r[n]:.3f}" if n in r else "-" for n in names)
                print(f"| {label} | {scheme} | {part}{tag} | {rule} | {r['mean']:.3f} | {cells} |")


if __name__ == "__main__":
    main()
