"""Which pipeline modules a command runs: the transitive `pipeline.*` imports of a module, read from
the source with ast (nothing is imported). It makes two things complete by construction: the test
that dvc.yaml's deps cover every module a stage runs (tests/test_dvc_deps.py), and the code digest
that keeps a training from resuming a checkpoint made by other training code.

A few plumbing modules are EXEMPT, each with the reason an edit to it cannot change what a stage
writes; their own imports are not followed either (pipeline.config imports the models' torch-free
declarations to validate names and compose params.yaml's sections: a stage that builds or reads a model
imports pipeline.models.registry itself, and its closure follows from there).
Imports under `if TYPE_CHECKING:` never run and are not followed. Importing pipeline.a.b runs the
packages' __init__.py files too; one that holds only its docstring is a marker, not code.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # the `pipeline` package

EXEMPT: dict[str, str] = {
    "pipeline.config": "the shape of params.yaml, its shared rules and what the knobs declare (which are execution "
                       "only, logged, report columns): every value it passes on comes from params.yaml, which DVC "
                       "tracks; what a stage computes from params (the dataset's spec, the domain count, a model's "
                       "section and builder) lives in the data and model modules, which are not exempt",
    "pipeline.knobs": "a knob's declaration and the strict conversion of a YAML value: every value it passes on "
                      "comes from params.yaml, which DVC tracks",
    "pipeline.errors": "exception classes: an edit changes a message, never an output",
    "pipeline.cli": "argument parsing and one-line error exits",
    "pipeline.tracking": "MLflow logging: the store is not a DVC output",
    "pipeline.tracker": "one MLflow run's logging: the store is not a DVC output",
    "pipeline.mlflow_model": "logs the generators as MLflow Models: the store is not a DVC output",
}


def module_file(name: str) -> Path | None:
    """The source file of module `name` (pipeline.x.y), or None if it is not a pipeline module."""
    rel = ROOT.parent.joinpath(*name.split("."))
    for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
           (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def direct_imports(name: str) -> set[str]:
    """The pipeline modules that module `name` imports (for `from pkg import mod`, the module)."""
    path = module_file(name)
    if path is None:
        return set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
            continue
        base = node.module or ""
        if node.level:  # relative import
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        if base.split(".")[0] != "pipeline":
            continue
        found.add(base)
        found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}") is not None}
    # importing pipeline.a.b runs pipeline/__init__.py and pipeline/a/__init__.py first
    found |= {".".join(m.split(".")[:i]) for m in list(found) for i in range(1, m.count(".") + 1)}
    return {m for m in found if module_file(m) is not None}


def _is_marker(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                                              for n in body)


def closure(name: str) -> set[str]:
    """`name` and every pipeline module it runs, transitively; EXEMPT modules and package markers
    are left out and not followed."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m in seen or m in EXEMPT:
            continue
        seen.add(m)
        todo.extend(direct_imports(m))
    return {m for m in seen if not _is_marker(module_file(m))}


def files(name: str) -> list[Path]:
    """The source files of closure(name), sorted, relative to the repository root."""
    return sorted(module_file(m).relative_to(ROOT.parent) for m in closure(name))


def code_digest(name: str) -> str:
    """SHA-256 over the path and bytes of every source file closure(name) runs."""
    h = hashlib.sha256()
    for rel in files(name):
        h.update(rel.as_posix().encode() + b"\0" + (ROOT.parent / rel).read_bytes())
    return h.hexdigest()
