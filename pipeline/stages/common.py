"""What every stage's `main` shares: argument parsing, params loading, clean error exits."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from pipeline.config import ConfigError, Params, load_params

log = logging.getLogger("pipeline")


class StageError(RuntimeError):
    """A failure the user can fix; the message names the file or parameter and the fix."""


def stage_main(name: str, argv: list[str] | None = None) -> tuple[Params, argparse.Namespace]:
    """Parse `--params`, load and validate it; exit with a one-line message on a config error."""
    parser = argparse.ArgumentParser(prog=f"python -m pipeline.stages.{name}")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    try:
        params = load_params(args.params)
    except ConfigError as e:
        fail(str(e))
    return params, args


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_stage(fn, *args, **kwargs):
    """Call a stage's work; user-fixable errors end in one clear line instead of a traceback."""
    from pipeline.data.archives import DownloadError  # local: keeps import cost off other stages
    from pipeline.tracking import TrackingError

    try:
        return fn(*args, **kwargs)
    except (StageError, ConfigError, DownloadError, TrackingError) as e:
        fail(str(e))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every output is written to a temporary sibling and renamed into place, so the old output
        # (or none) is what a later stage sees, never a half-written one
        fail(f"disk full while writing {e.filename or 'an output'} ({e.strerror}); nothing half-written was "
             f"kept (outputs are replaced atomically; partial downloads and checkpoints are kept for resuming). "
             f"Free space and re-run")
