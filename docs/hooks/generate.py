"""mkdocs hooks (mkdocs.yml `hooks:`): the generated reference and the repository's reports in the site.

- docs/parameters.md and docs/evaluation.md hold a marker line that is replaced by the tables that
  pipeline/reference.py writes from the knob declarations and the metric registry;
- the pictures under reports/ are served at reports/..., so a page shows the committed figures where they
  are made, never a copy (the reports' tables are included by pymdownx.snippets)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from mkdocs.structure.files import File

from pipeline.reference import metrics_markdown, parameters_markdown

REPO = Path(__file__).resolve().parents[2]
MARKERS = {
    "<!-- generated: parameters -->": lambda: parameters_markdown(yaml.safe_load((REPO / "params.yaml").read_text())),
    "<!-- generated: metrics -->": lambda: metrics_markdown(
        json.loads((REPO / "reports" / "eval" / "protocol.json").read_text())),
}


def on_files(files, config):
    for picture in sorted((REPO / "reports").rglob("*.png")):
        files.append(File(str(picture.relative_to(REPO)), str(REPO), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
