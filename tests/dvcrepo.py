"""A throwaway git + DVC copy of this repository, for tests that run `dvc repro` / `dvc exp`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, repo_params_dict, set_key

COPY = ["pipeline", "params.yaml", "dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore", "pyproject.toml"]


def env() -> dict:
    e = dict(os.environ)
    # `python` and `dvc` of the running interpreter's environment, whatever the caller's PATH says
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("GIT_AUTHOR_NAME", "test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    e.setdefault("GIT_COMMITTER_NAME", "test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    e["DVC_NO_ANALYTICS"] = "1"
    return e


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def make_repo(dest: Path, overrides: dict) -> Path:
    """Copy the project into `dest`, apply dotted-key overrides to params.yaml, commit it."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in COPY:
        src = REPO / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    params = repo_params_dict()
    for k, v in overrides.items():
        set_key(params, k, v)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    run(["git", "init", "-q", "-b", "main"], dest)
    # an identity of the repo's own: DVC commits experiments, and a fresh machine may have no global one
    run(["git", "config", "user.name", "test"], dest)
    run(["git", "config", "user.email", "test@example.invalid"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "init"], dest)
    return dest


TINY = {
    "data.synthetic.n_train_a": 8, "data.synthetic.n_train_b": 8, "data.synthetic.n_test": 4,
    "data.synthetic.image_size": 32, "prepare.load_size": 32, "prepare.min_size": 16,
    "cyclegan.ngf": 4, "cyclegan.ndf": 4, "train.crop_size": 32, "train.n_epochs": 1, "train.n_epochs_decay": 1,
    "train.checkpoint_every": 4, "train.log_every": 4, "train.device": "cpu", "translate.device": "cpu",
    "evaluator.width": 4, "evaluator.epochs": 2, "evaluator.device": "cpu", "evaluate.device": "cpu",
    "evaluate.kid_subsets": 10, "bicyclegan.generator": "unet_32", "bicyclegan.ngf": 4, "bicyclegan.ndf": 4,
    "bicyclegan.nef": 4,
}
