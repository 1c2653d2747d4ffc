"""The one error base of the pipeline.

Every failure a user can fix is a PipelineError whose message is one line naming the file or
parameter and what would fix it; `pipeline.cli.run_stage` turns it into that line and exit code 2,
never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can fix; str(e) names the file or key and the fix."""


class ConfigError(PipelineError):
    """A params.yaml problem: names the key, what was found and what is allowed."""


class StageError(PipelineError):
    """A stage cannot run on what it was given (a missing input, data that contradicts params)."""


class TrackingError(PipelineError):
    """The MLflow store cannot be used."""


class Unavailable(PipelineError):
    """A metric that cannot be computed here; str(e) says why and what would enable it. The
    evaluation reports it as unavailable instead of failing."""
