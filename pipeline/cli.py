"""What every command's `main` shares: `--params`, a `--help` that says what the command reads and
writes (its module docstring), strict params loading, and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path
from typing import Callable, NoReturn, TypeVar

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")
T = TypeVar("T")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose --help shows `doc` (the command's module docstring) and --params."""
    ap = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    return ap


def load(prog: str, args: argparse.Namespace) -> Params:
    """Set up logging and load the params, exiting with one line on a config error."""
    logging.basicConfig(level=logging.INFO, format=f"[{prog.rsplit('.', 1)[-1]}] %(message)s", stream=sys.stderr)
    return run_stage(load_params, args.params)


def stage_main(prog: str, doc: str | None, argv: list[str] | None = None) -> tuple[Params, argparse.Namespace]:
    """Parse `--params` of the command `prog` (e.g. pipeline.stages.train) and load it."""
    args = parser(prog, doc).parse_args(argv)
    return load(prog, args), args


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_stage(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call a command's work; a PipelineError or a full disk ends in one clear line."""
    try:
        return fn(*args, **kwargs)
    except PipelineError as e:
        fail(str(e))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every output is written to a temporary sibling and renamed into place, so the old output
        # (or none) is what a later stage sees, never a half-written one
        fail(f"disk full while writing {e.filename or 'an output'} ({e.strerror}); nothing half-written was "
             f"kept (outputs are replaced atomically; partial downloads and checkpoints are kept for resuming). "
             f"Free space and re-run")
