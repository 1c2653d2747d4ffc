"""The docs: a README a newcomer reads on one screen, every page complete as plain Markdown (its generated parts
written in, every link and image resolving from its folder), the mkdocs site built strictly (no warning, no broken
link) with its generated reference pages, and the marks on the code blocks that the suite runs."""

import json
import os
import re
import subprocess
import sys

import yaml

from pipeline.config import declared
from pipeline.metrics.registry import KEYS
from pipeline.reference import metrics_markdown, parameters_markdown
from pipeline.tools import docs
from tests.helpers import BLOCK, MARKER, REPO, doc_pages, documented_blocks


def test_the_readme_is_short_and_opens_with_the_two_set_up_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    first_screen = "\n".join(text.splitlines()[:40])
    assert "pip install -q -e . && dvc repro" in first_screen
    assert 'pip install -q -e ".[test]" && pytest' in first_screen


def test_the_ci_runs_the_readmes_test_command_verbatim():
    setup = [b.commands[0] for b in documented_blocks() if b.page == "README.md" and b.kind == "runnable: setup"]
    assert len(setup) == 2
    assert setup[1] in (REPO / ".ci" / "run").read_text()


def test_every_runnable_mark_stands_on_a_code_block():
    """A mark that is not directly above a code block (or has another form) would silently run nothing."""
    for page in doc_pages():
        text = page.read_text()
        assert len(MARKER.findall(text)) == len(BLOCK.findall(text)), page


def test_the_site_builds_strictly_with_the_generated_reference(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr
    parameters = (site / "parameters" / "index.html").read_text()
    for k in declared():
        if not k.section:
            assert f"<code>{k.key}</code>" in parameters, k.key
    evaluation = (site / "evaluation" / "index.html").read_text()
    for key in KEYS:
        assert f"<code>{key}</code>" in evaluation, key
    assert (site / "reports" / "eval" / "grid.png").exists()  # the reports' pictures are served where they are


def test_the_parameter_reference_says_what_each_knob_does():
    """Every knob has a doc, and the generated page gives its range and its value in params.yaml."""
    assert all(k.meta["doc"] for k in declared()), [k.key for k in declared() if not k.meta["doc"]]
    page = parameters_markdown(yaml.safe_load((REPO / "params.yaml").read_text()))
    row = next(line for line in page.splitlines() if line.startswith("| `lambda_cycle`"))
    assert "[0.0, inf]" in row and "`10.0`" in row and "| yes | train |" in row
    row = next(line for line in page.splitlines() if line.startswith("| `train.num_threads`"))
    assert "| no |" in row  # execution only: it does not change what the training computes


def test_the_metric_reference_names_the_weights_of_the_committed_run():
    protocol = json.loads((REPO / "reports" / "eval" / "protocol.json").read_text())
    page = metrics_markdown(protocol)
    section = page[page.index("### `fid_kid`"):page.index("### `lpips`")]
    assert "| `fid_AtoB` | lower ↓ | score | yes | yes |" in section
    assert re.search(r"\*\*weights\*\*: `.*sha1 [0-9a-f]{12}", section)
    lpips = page[page.index("### `lpips`"):]
    assert re.search(r"sha256 [0-9a-f]{12}", lpips)


FENCE = re.compile(r"^```.*?^```", re.S | re.M)
HTML_SRC = re.compile(r'src="([^"]+)"')


def test_every_page_holds_its_generated_parts_as_they_are_generated_now():
    """A page read on a code host is the page: no include syntax, and regenerating gives the same bytes."""
    assert docs.stale() == [], "run python -m pipeline.tools.docs and commit the pages"
    for page in docs.pages():
        assert "--8<--" not in page.read_text(), page


def test_every_link_and_image_resolves_from_its_pages_folder():
    broken = []
    for page in docs.pages():
        text = FENCE.sub("", page.read_text())
        targets = [m.group(2) for m in docs.LINK.finditer(text)] + HTML_SRC.findall(text)
        for target in targets:
            path = target.partition("#")[0]
            if path and not docs.EXTERNAL.match(target) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_an_included_report_is_relinked_and_a_stale_page_is_found(tmp_path, monkeypatch):
    report = "# R\n\n## Against the paper\n\n| a |\n|---|\n| 1 |\n\n![fig](fig.png) [docs](../docs/x.md#top)\n\n## Next\n\nno\n"
    body = docs.section(report, "against-the-paper", "r.md")
    assert body == "| a |\n|---|\n| 1 |\n\n![fig](fig.png) [docs](../docs/x.md#top)\n"
    moved = docs.relinked("![fig](fig.png) [x](https://a.b/c.png) [y](#here)", REPO / "reports" / "r.md", REPO / "docs" / "p.md")
    assert moved == "![fig](../reports/fig.png) [x](https://a.b/c.png) [y](#here)"
    page = REPO / "docs" / "p.md"
    marked = "intro\n<!-- generated: parameters -->\nold\n<!-- end generated -->\nrest\n"
    fresh = docs.render(page, marked)
    assert fresh != marked and fresh.startswith("intro\n<!-- generated: parameters -->\n\n### Top level") and fresh.endswith(
        "\n<!-- end generated -->\nrest\n")
    assert docs.render(page, fresh) == fresh  # idempotent: a regenerated page is not stale


def test_the_readme_times_table_names_machine_commit_and_estimate():
    from pipeline.studies import readme_times

    report = {"machine": "AMD EPYC, 2 cores", "commit": "abc1234", "rows": [
        {"what": "main job", "command": "python3 -m venv .venv && dvc repro", "seconds": 330.0},
        {"what": "ablation study (estimate)", "command": "python -m pipeline.studies.ablations --jobs 2",
         "seconds": 3000.0, "estimate": "21 experiments"}]}
    text = readme_times.markdown(report)
    assert text.startswith("# The README's commands, timed\n") and "AMD EPYC, 2 cores" in text and "abc1234" in text
    assert "| main job | `python3 -m venv .venv && dvc repro` | 6 |" in text
    assert "| 50 (21 experiments) |" in text
    assert docs.section(text, "the-readmes-commands-timed", "r.md").startswith("Each once on AMD EPYC")
