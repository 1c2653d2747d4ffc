"""The generated reference of the docs: every params.yaml key from its knob() declaration (config.declared)
and every metric key from the metric registry, as Markdown. `python -m pipeline.tools.docs` writes them into
the pages docs/parameters.md and docs/evaluation.md, so the docs never restate by hand what the code declares."""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import Knob, declared, flatten
from pipeline.knobs import type_name
from pipeline.metrics.registry import METRICS


def _cell(value: Any) -> str:
    """A value as a Markdown table cell: code-formatted, pipes escaped."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return "`" + text.replace("|", "\\|") + "`" if text else ""


def _allowed(meta: dict) -> str:
    if meta["choices"]:
        return " \\| ".join(f"`{c}`" for c in meta["choices"])
    if meta["min"] is not None or meta["max"] is not None:
        lo = meta["min"] if meta["min"] is not None else "-inf"
        hi = meta["max"] if meta["max"] is not None else "inf"
        return f"[{lo}, {hi}]"
    return _cell(meta["pattern"]) if meta["pattern"] else ""


def _changes_results(k: Knob, sections: dict[str, Knob]) -> bool:
    """A knob changes results unless it or a section above it is declared results=False."""
    parts = k.key.split(".")
    above = [sections[".".join(parts[:i])] for i in range(1, len(parts)) if ".".join(parts[:i]) in sections]
    return all(s.meta["results"] for s in [*above, k])


def _knob_row(k: Knob, default: Any, sections: dict[str, Knob]) -> str:
    cells = [f"`{k.key}`", f"`{type_name(k.type)}`".replace("|", "\\|"), _allowed(k.meta), _cell(default),
             "yes" if _changes_results(k, sections) else "no", ", ".join(k.stages),
             k.meta["doc"].replace("|", "\\|")]
    return "| " + " | ".join(cells) + " |"


def parameters_markdown(params: dict) -> str:
    """One table per params.yaml section (the top-level knobs first): key, type, allowed values, the value in
    `params` (params.yaml as loaded), whether it changes what the training computes (knob(results=)), the
    DVC stages whose outputs it changes, and its doc."""
    knobs = declared()
    sections = {k.key: k for k in knobs if k.section}
    values = flatten(params)
    head = ("| key | type | allowed | value in params.yaml | changes results | stages | meaning |\n"
            "|---|---|---|---|---|---|---|")
    groups: dict[str, list[str]] = {}
    for k in knobs:
        if k.section:
            continue
        where = k.key.rsplit(".", 1)[0] if "." in k.key else ""
        default = values.get(k.key, _section_value(params, k.key))
        groups.setdefault(where, []).append(_knob_row(k, default, sections))
    out = []
    for where, rows in groups.items():
        title = f"`{where}`" if where else "Top level (the ablation knobs of the paper)"
        doc = sections[where].meta["doc"] if where in sections else ""
        out += [f"### {title}", "", *([doc, ""] if doc else []), head, *rows, ""]
    return "\n".join(out)


def _section_value(params: dict, key: str) -> Any:
    """A value that flatten() expands (a mapping knob such as data.local): read it by its dotted path."""
    node: Any = params
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def metrics_markdown(protocol: dict[str, dict]) -> str:
    """One section per metric family of the registry: its protocol line, its keys (direction, role, whether in
    the summary and the study tables), and the protocol the committed run recorded for its first key
    (`protocol`: reports/eval/protocol.json), which names the networks, their weights and their hashes."""
    out = []
    for name, metric in METRICS.items():
        rows = [f"| `{k.key}` | {_direction(k.better)} | {k.kind} | {'yes' if k.summary else ''} | "
                f"{'yes' if k.headline else ''} |" for k in metric.keys]
        out += [f"### `{name}`", "", metric.protocol, "",
                "| key | better | role | in the summary | in the study tables |", "|---|---|---|---|---|", *rows, ""]
        first = next((str(k.key) for k in metric.keys if str(k.key) in protocol), None)
        if first:
            out += [f"As the committed run recorded it (`{first}`):", ""]
            out += [f"- **{field}**: {_cell(value)}" for field, value in protocol[first].items()] + [""]
    return "\n".join(out)


def _direction(better: str | None) -> str:
    return {"higher": "higher ↑", "lower": "lower ↓"}.get(str(better).lower(), "-")
