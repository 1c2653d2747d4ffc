"""A knob of params.yaml: its declaration (`knob()`: doc, allowed values, which stages' outputs it changes,
whether it is part of what the training computes, whether MLflow logs it, its report columns) and the strict
conversion of a YAML value to it. A leaf: the params sections of pipeline/config.py and of each model
(pipeline/models/<name>/__init__.py) declare their knobs with it, and nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import field
from typing import Any, Callable, Literal

from pipeline.errors import ConfigError

# A thread count: "auto" = this process's share of the cores (pipeline/runtime.py: thread_budget).
Threads = Literal["auto"] | int
# Where a stage computes (pipeline/runtime.py: resolve_device): auto = CUDA when there is one.
DEVICES = ("auto", "cpu", "cuda")


def knob(*, min: float | None = None, max: float | None = None, choices: tuple | None = None,
         pattern: str | None = None, doc: str = "", stages: tuple[str, ...] | None = None, results: bool = True,
         logged: bool | Callable[[Any], bool] = True, view: int | None = None, study: int | None = None) -> Any:
    """A required dataclass field (no default: the value lives in params.yaml) and what it means.

    min/max/choices/pattern: the allowed values. doc: one line, what it does.
    stages: the DVC stages whose outputs it changes (a section's fields inherit the section's), which
      their dvc.yaml `params` must cover (tests/test_dvc_deps.py).
    results: False = not part of what the training computes: how a run executes or reports, where it
      writes, or what a later stage does with the trained model; the training fingerprint leaves it out,
      so a checkpoint made under another value is resumed (config.execution_only_keys).
    logged: False, or a test of the params, for what an MLflow run leaves out (config.logged_params).
    view / study: the column's position in the saved MLflow view (tracking.py) / in the study tables
      (studies/report.py); None = not a column."""
    return field(metadata=dict(min=min, max=max, choices=choices, pattern=pattern, doc=doc, stages=stages,
                               results=results, logged=logged, view=view, study=study))


# ---------------------------------------------------------------------------------------------
# Strict conversion of YAML values.

_NONE = type(None)


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    return "null" if tp is _NONE else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and _NONE in args:
            return None
        inner = [a for a in args if a is not _NONE]
        if len(inner) == 1:
            return _convert(value, inner[0], key, meta)
        for a in inner:  # the first alternative that accepts the value
            try:
                return _convert(value, a, key, meta)
            except ConfigError:
                pass
        lo, hi = meta.get("min"), meta.get("max")
        rng = f" (integers in [{lo}, {hi if hi is not None else 'inf'}])" if lo is not None else ""
        raise ConfigError(f"{key}: expected {type_name(tp)}{rng}, got {value!r}")
    if origin is tuple:  # tuple[T, ...]: a YAML list, each item checked as T (choices apply per item)
        (item, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, e.g. [{', '.join(map(str, meta.get('choices') or ()))}], "
                              f"got {value!r}")
        items = tuple(_convert(v, item, f"{key}[{i}]", meta) for i, v in enumerate(value))
        if len(set(items)) != len(items):
            raise ConfigError(f"{key}: {list(items)} names an item twice; each may appear once")
        return items
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    else:
        raise TypeError(f"unsupported type {tp} at {key}")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {rng}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed{did_you_mean(str(value), map(str, choices))}; "
                          f"allowed values: {', '.join(map(str, choices))}")
    pattern = meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"{key}: {value!r} does not match the expected form {pattern}")
    return value


def did_you_mean(word: str, allowed: typing.Iterable[str]) -> str:
    """' (did you mean lambda_cycle?)' for a near miss such as lamda_cycle; '' when nothing is close."""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown, missing and ill-typed keys."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping with keys {', '.join(known)}, got {data!r}")
    unknown = sorted(map(str, set(data) - set(known)))
    if unknown:
        named = ", ".join(k + did_you_mean(k, known) for k in unknown)
        raise ConfigError(f"{where + ': ' if where else ''}unknown key(s) {named}; allowed keys: {', '.join(known)}")
    missing = [k for k in known if k not in data]
    if missing:
        prefix = where + "." if where else ""
        raise ConfigError(f"missing key(s) {', '.join(prefix + k for k in missing)} (every knob lives in params.yaml)")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in known.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(data[name], hints[name], key, dict(f.metadata))
    return cls(**kwargs)
