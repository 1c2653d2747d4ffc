"""`dvc repro` of the whole pipeline on the tiny embedded dataset, in a throwaway git repo."""

import json

from tests.dvcrepo import TINY, make_repo, run


def test_dvc_repro_runs_every_stage_offline(tmp_path):
    repo = make_repo(tmp_path / "repo", TINY)
    run(["dvc", "repro"], repo)
    manifest = json.loads((repo / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["counts"]["trainA"] == 8 and manifest["counts"]["testB"] == 4
    # a second repro is a no-op: every stage is up to date
    r = run(["dvc", "repro"], repo)
    assert "didn't change, skipping" in r.stdout or "up to date" in r.stdout
    # a data param change reruns download and prepare
    params = (repo / "params.yaml").read_text().replace("n_test: 4", "n_test: 5")
    (repo / "params.yaml").write_text(params)
    r = run(["dvc", "repro"], repo)
    assert "Running stage 'download'" in r.stdout and "Running stage 'prepare'" in r.stdout
    manifest = json.loads((repo / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["counts"]["testB"] == 5
