"""mkdocs hooks (mkdocs.yml `hooks:`): the repository's reports in the site.

The pages are complete as committed (their generated parts are written by `python -m pipeline.tools.docs`) and
link the reports' pictures where they are made, `../reports/...` from docs/. The site serves those pictures at
reports/... (never a copy), and this hook points the pages' links there."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]


def on_files(files, config):
    for picture in sorted((REPO / "reports").rglob("*.png")):
        files.append(File(str(picture.relative_to(REPO)), str(REPO), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    up = "../" * page.file.src_uri.count("/")  # from the page's folder to docs/
    for before in ("](", 'src="'):
        markdown = markdown.replace(f"{before}{up}../reports/", f"{before}{up}reports/")
    return markdown
