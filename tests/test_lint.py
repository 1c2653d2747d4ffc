"""ruff, configured in pyproject.toml, finds nothing in the package and the tests."""

import subprocess
import sys

from tests.helpers import REPO


def test_ruff_finds_nothing():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "pipeline", "tests"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_modules_and_functions_stay_short_enough_to_read_at_once():
    """Every module of pipeline/ within 400 lines, every function within 60: a module holds one concept and a
    function reads at once."""
    import ast

    long = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        source = path.read_text()
        rel = path.relative_to(REPO)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{rel}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)
