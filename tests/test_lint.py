"""ruff, configured in pyproject.toml, finds nothing in the package and the tests."""

import subprocess
import sys

from tests.helpers import REPO


def test_ruff_finds_nothing():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "pipeline", "tests"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
