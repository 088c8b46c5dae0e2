"""Every component: one folder (component.py + README.md), the project image, typed artifacts, a light import.

What it catches: a component built on another image (or pip-installing kfp at start), an untyped or renamed
artifact the pipeline wiring relies on, and a heavy import at module level that would slow every compile.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # components/ is a top-level package of the source tree (also when run alone)
FOLDERS = ("prepare", "validate", "kb", "caption", "pretrain", "evaluate", "register", "promote", "bento", "score")
# component -> (input artifacts, output artifacts) as type names
ARTIFACTS = {
    "prepare_merge": ({}, {"store": "system.Dataset"}),
    "prepare_real": ({}, {"store": "system.Dataset"}),
    "validate": ({"store": "system.Dataset"}, {"report": "system.HTML", "summary": "system.Artifact"}),
    "build_kb": ({}, {"kb": "system.Artifact"}),
    "caption": ({"store": "system.Dataset", "kb": "system.Artifact"}, {"captions": "system.Dataset"}),
    "pretrain": ({"store": "system.Dataset", "captions": "system.Dataset", "real_store": "system.Dataset",
                  "real_captions": "system.Dataset"}, {"model": "system.Model"}),
    "evaluate": ({"model": "system.Model", "store": "system.Dataset", "kb": "system.Artifact"},
                 {"metrics": "system.Metrics", "report_md": "system.Markdown", "report_html": "system.HTML",
                  "evaluation": "system.Artifact"}),
    "evaluate_real": ({"model": "system.Model", "store": "system.Dataset", "kb": "system.Artifact"},
                      {"metrics": "system.Metrics", "report_md": "system.Markdown", "report_html": "system.HTML",
                       "evaluation": "system.Artifact"}),
    "register": ({"model": "system.Model", "evaluation": "system.Artifact", "evaluation_real": "system.Artifact"},
                 {"registered": "system.Model"}),
    "promote": ({}, {"decision": "system.Artifact"}),
    "build_bento": ({}, {"bento": "system.Artifact"}),
    "score_shard": ({}, {"scores": "system.Dataset"}),
    "score_merge": ({}, {"summary": "system.Dataset"}),
}


def components() -> dict[str, object]:
    found = {}
    for folder in FOLDERS:
        module = importlib.import_module(f"components.{folder}.component")
        for name in dir(module):
            obj = getattr(module, name)
            if hasattr(obj, "component_spec") and hasattr(obj, "python_func"):
                found[name] = obj
    return found


@pytest.mark.parametrize("folder", FOLDERS)
def test_one_folder_per_stage(folder: str) -> None:
    d = REPO / "components" / folder
    assert (d / "component.py").is_file() and (d / "README.md").is_file()
    assert "esi." in (d / "README.md").read_text()  # names the esi function it calls


def test_components_use_the_project_image_and_typed_artifacts() -> None:
    from components import BASE_IMAGE

    found = components()
    assert set(ARTIFACTS) <= set(found)
    for name, comp in found.items():
        container = comp.component_spec.implementation.container
        assert container.image == BASE_IMAGE, name
        assert "pip install" not in " ".join(container.command or []), name  # the image ships kfp and esi
    for name, (inputs, outputs) in ARTIFACTS.items():
        spec = found[name].component_spec
        got_in = {k: v.type for k, v in spec.inputs.items() if "@" in v.type}
        got_out = {k: v.type for k, v in (spec.outputs or {}).items() if "@" in v.type}
        assert {k: v.split("@")[0] for k, v in got_in.items()} == inputs, name
        assert {k: v.split("@")[0] for k, v in got_out.items()} == outputs, name
    # The inputs a pipeline may leave unwired (the real benchmark's, the knowledge base of the prompts) are
    # optional; the ones every run needs are not.
    optional = {(n, k) for n in ARTIFACTS for k, v in found[n].component_spec.inputs.items()
                if "@" in v.type and v.optional}
    assert optional == {("pretrain", "real_store"), ("pretrain", "real_captions"), ("evaluate", "kb"),
                        ("evaluate_real", "kb"), ("register", "evaluation_real")}


def test_importing_components_and_pipelines_stays_light() -> None:
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import pipelines.esi_full, pipelines.batch_scoring; "
            "heavy = [m for m in ('torch', 'mlflow', 'bentoml', 'pandas', 'great_expectations', 'chromadb', "
            "'transformers') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_image_is_one_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from components.score.component import score_plan; "
            "print(score_plan.component_spec.implementation.container.image)")
    env = {"ESI_IMAGE": "registry.example/esi:9", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    assert out.strip() == "registry.example/esi:9"
