"""Loaded by every Python process started with this folder on PYTHONPATH (see tests/test_faults.py).
It arms a fault only in a training stage process and only when PIPELINE_FAULT is set, so `dvc`
itself and other stages run untouched."""

import os
import sys

if os.environ.get("PIPELINE_FAULT") and "pipeline.stages.train" in getattr(sys, "orig_argv", []):
    import pipeline_faults

    pipeline_faults.install(os.environ["PIPELINE_FAULT"])
