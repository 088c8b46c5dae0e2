"""KFP overhead: the same end-to-end run in process (``esi run``) and as the esi_full pipeline through kfp.local
(``esi pipeline run --local``), on the same data and sizes, in one invocation; per stage and in total.

    .venv/bin/python bench/kfp_pipeline.py [--subjects 120 --records-per-subject 5 --epochs 3 --model esi_cpu]
                                           [--work DIR] [--json OUT]

Each side gets a fresh work folder and its own ESI_HOME (so neither reuses the other's knowledge base, caption
cache, checkpoints or registry). Prints seconds per stage, the pipeline/in-process ratio, and the totals; the
pipeline side includes kfp.local's per-step subprocess start (imports, executor) that a cluster pays per pod too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# esi run stage -> the esi_full steps that do its work
STAGES = {
    "synth+prepare": (("synth", "prepare"), ("prepare-plan", "prepare-shard", "prepare-merge")),
    "validate": (("validate",), ("validate",)),
    "kb": (("kb",), ("build-kb",)),
    "caption": (("caption",), ("caption",)),
    "pretrain": (("pretrain",), ("pretrain",)),
    "evaluate": (("evaluate",), ("evaluate",)),
    "register": (("register",), ("register",)),
    "promote": (("promote",), ("promote",)),
    "bento": (("bento",), ("build-bento",)),
    "score": (("score",), ("score-plan", "score-shard", "score-merge")),
}


def _run(cmd: list[str], home: Path) -> float:
    env = {**os.environ, "ESI_HOME": str(home)}
    env.pop("BENTOML_HOME", None)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=120)
    ap.add_argument("--records-per-subject", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", default="esi_cpu")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="esi-kfp-bench-"))
    esi = str(Path(sys.executable).with_name("esi"))
    sizes = ["--subjects", str(args.subjects), "--records-per-subject", str(args.records_per_subject),
             "--epochs", str(args.epochs), "--model", args.model]

    wall_local = _run([esi, "run", "--out", str(work / "inproc"), "--quiet", *sizes], work / "home-inproc")
    inproc = json.loads((work / "inproc" / "run.json").read_text())["seconds"]
    wall_kfp = _run([esi, "pipeline", "run", "--local", "--out", str(work / "kfp"), *sizes], work / "home-kfp")
    kfp = json.loads((work / "kfp" / "pipeline-run.json").read_text())

    rows = []
    print(f"{'stage':<16}{'esi run (s)':>12}{'pipeline (s)':>14}{'ratio':>8}")
    for stage, (local_names, kfp_names) in STAGES.items():
        a = sum(inproc.get(n, 0.0) for n in local_names)
        b = sum(kfp["steps"].get(n, 0.0) for n in kfp_names)
        rows.append({"stage": stage, "esi_run_s": round(a, 1), "pipeline_s": round(b, 1),
                     "ratio": round(b / a, 2) if a else None})
        print(f"{stage:<16}{a:>12.1f}{b:>14.1f}{(b / a if a else float('nan')):>8.2f}")
    total_a, total_b = sum(inproc.values()), kfp["total_s"]
    print(f"{'stages total':<16}{total_a:>12.1f}{total_b:>14.1f}{total_b / total_a:>8.2f}")
    print(f"{'process wall':<16}{wall_local:>12.1f}{wall_kfp:>14.1f}{wall_kfp / wall_local:>8.2f}")
    print(f"KFP overhead: x{wall_kfp / wall_local:.2f} wall ({wall_kfp - wall_local:+.1f} s) for "
          f"{len(kfp['tasks'])} kfp.local tasks; sizes {args.subjects}x{args.records_per_subject}, "
          f"{args.epochs} epoch(s), {args.model}; work {work}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "wall_esi_run_s": wall_local, "wall_pipeline_s": wall_kfp,
                                         "tasks": kfp["tasks"]}, indent=2))


if __name__ == "__main__":
    main()
