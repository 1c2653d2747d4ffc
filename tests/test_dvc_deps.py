"""The code a stage runs is what DVC watches: every stage's deps in dvc.yaml cover the pipeline modules
it imports, transitively (pipeline/codedeps.py), and name nothing it does not run. Stages import no
other stage; studies import library modules only, and no private name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline import codedeps
from tests.helpers import REPO

STAGE_PREFIX = "python -m "


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def code_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if isinstance(d, str) and d.startswith("pipeline/")]


def module_of(stage: dict) -> str:
    assert stage["cmd"].startswith(STAGE_PREFIX), stage["cmd"]
    return stage["cmd"][len(STAGE_PREFIX):].split()[0]


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def uncovered(module: str, deps: list[str]) -> list[str]:
    """Files the stage runs that no dep covers: edits to them would not rerun the stage."""
    return [str(f) for f in codedeps.files(module) if not covered(f, deps)]


def stale(module: str, deps: list[str]) -> list[str]:
    """Code deps that cover no file the stage runs: edits to them rerun it for nothing."""
    files = codedeps.files(module)
    return [d for d in deps if not any(covered(f, [d]) for f in files)]


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_the_deps_of_a_stage_are_the_code_it_runs(name):
    stage = dvc_stages()[name]
    module, deps = module_of(stage), code_deps(stage)
    assert not uncovered(module, deps), f"{name}: add to its deps in dvc.yaml: {uncovered(module, deps)}"
    assert not stale(module, deps), f"{name}: deps it does not run: {stale(module, deps)}"


def test_the_check_catches_a_removed_dep():
    stage = dvc_stages()["segmenter"]
    deps = [d for d in code_deps(stage) if d != "pipeline/metrics/math.py"]
    assert uncovered(module_of(stage), deps) == ["pipeline/metrics/math.py"]
    assert stale(module_of(stage), [*code_deps(stage), "pipeline/models/networks.py"]) == ["pipeline/models/networks.py"]


def test_the_closure_follows_imports_and_skips_exempt_plumbing():
    files = {str(f) for f in codedeps.files("pipeline.stages.segmenter")}
    assert "pipeline/metrics/math.py" in files          # imported by the stage
    assert "pipeline/data/labels.py" in files           # imported by math.py: transitive
    assert "pipeline/config.py" not in files            # exempt, and so is what only it imports
    assert "pipeline/models/networks.py" not in files
    assert set(codedeps.EXEMPT) == {"pipeline.config", "pipeline.knobs", "pipeline.errors", "pipeline.cli",
                                    "pipeline.tracking", "pipeline.tracker", "pipeline.mlflow_model"}
    assert "pipeline/io.py" in files                     # it serialises outputs (JSON, PNG): not exempt


def test_a_package_init_with_code_counts(tmp_path, monkeypatch):
    """Importing pipeline.a.b runs pipeline/a/__init__.py: the closure holds it once it has code."""
    (tmp_path / "pipeline" / "a").mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "a" / "__init__.py").write_text('"""A marker."""\n')
    (tmp_path / "pipeline" / "a" / "b.py").write_text("X = 1\n")
    (tmp_path / "pipeline" / "main.py").write_text("from pipeline.a.b import X\n")
    monkeypatch.setattr(codedeps, "ROOT", tmp_path / "pipeline")
    assert codedeps.closure("pipeline.main") == {"pipeline.main", "pipeline.a.b"}
    (tmp_path / "pipeline" / "a" / "__init__.py").write_text("Y = 2\n")
    assert codedeps.closure("pipeline.main") == {"pipeline.main", "pipeline.a.b", "pipeline.a"}


def pipeline_modules(folder: str) -> list[str]:
    return sorted(f"pipeline.{folder}.{p.stem}" for p in (REPO / "pipeline" / folder).glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", pipeline_modules("stages"))
def test_no_stage_imports_another_stage(module):
    others = {m for m in codedeps.direct_imports(module) if m.startswith("pipeline.stages.") and m != module}
    assert not others, f"{module} imports {others}; move what they share into a library module"


def library_and_studies() -> list[str]:
    root = REPO / "pipeline"
    return sorted(".".join(("pipeline", *p.relative_to(root).with_suffix("").parts)) for p in root.rglob("*.py")
                  if "stages" not in p.parts and p.stem != "__init__")


@pytest.mark.parametrize("module", library_and_studies())
def test_the_library_and_the_studies_import_no_stage_and_no_private_name(module):
    assert not {m for m in codedeps.direct_imports(module) if m.startswith("pipeline.stages")}
    tree = ast.parse(codedeps.module_file(module).read_text())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and (n.module or "").startswith("pipeline") for a in n.names if a.name.startswith("_")]
    assert not private, f"{module} imports private names {private}"


def out_paths(stage: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])}


def upstream(name: str, stages: dict[str, dict]) -> set[str]:
    """The stages whose outputs stage `name` depends on, transitively (an out of one is a dep of the other)."""
    found, todo = set(), [name]
    while todo:
        deps = {d for d in stages[todo.pop()].get("deps", []) if isinstance(d, str)}
        for other, stage in stages.items():
            if other not in found and out_paths(stage) & deps:
                found.add(other)
                todo.append(other)
    return found


def uncovered_knobs(name: str, stages: dict[str, dict]) -> list[str]:
    """The result-changing knobs declared to change stage `name`'s outputs (knob(stages=...)) that neither its
    dvc.yaml params nor those of a stage upstream of it name: a change to them would not rerun it."""
    from pipeline.config import declared

    covering = [p for s in {name} | upstream(name, stages) for p in stages[s].get("params", [])]
    return [k.key for k in declared() if not k.section and k.meta["results"] and name in k.stages
            and not any(k.key == p or k.key.startswith(p + ".") for p in covering)]


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_the_params_of_a_stage_cover_the_knobs_that_change_its_outputs(name):
    missing = uncovered_knobs(name, dvc_stages())
    assert not missing, f"{name}: add to its params in dvc.yaml: {missing}"


def test_the_knobs_name_only_stages_of_dvc_yaml_and_the_check_catches_a_removed_param():
    from pipeline.config import declared

    assert {s for k in declared() for s in k.stages} <= set(dvc_stages())
    stages = dvc_stages()
    stages["train"]["params"].remove("lambda_cycle")
    assert uncovered_knobs("train", stages) == ["lambda_cycle"]
    stages["train"]["params"].remove("seed")  # read by translate too, which depends on train's model
    assert uncovered_knobs("translate", stages) == ["seed"]
    stages["download"]["params"].remove("data.synthetic")
    assert uncovered_knobs("download", stages) == [f"data.synthetic.{k}" for k in ("image_size", "n_train_a", "n_train_b",
                                                                                  "n_test", "n_test_multi", "seed")]
