"""A folder of one's own (data.dataset: local): both of the authors' layouts, optional labels, the
prepare rules (EXIF orientation, non-images listed), clear layout errors, and DVC rerunning prepare
and what follows, and nothing else, when one image changes."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import SyntheticParams
from pipeline.errors import StageError
from pipeline.stages import download, prepare
from tests.helpers import make_local_folder, make_repo, run, run_stages


@pytest.fixture
def raw(make_params, tmp_path):
    """The embedded world's raw files, the material the local folders are made of."""
    p = make_params()
    return download.run(p.data, Path(p.paths.raw), progress=False)


def local(make_params, folder: Path, **overrides):
    return make_params(data__dataset="local", data__local__path=str(folder), **overrides)


@pytest.mark.long
def test_unaligned_folder_trains_translates_and_evaluates(raw, make_params, tmp_path):
    folder = make_local_folder(raw, tmp_path / "own")
    (folder / "trainA" / "notes.txt").write_text("not an image")
    p = local(make_params, folder)
    out = run_stages(p, "prepare")
    m = out["prepare"]
    assert m["dataset"] == "local" and m["layout"] == "unaligned"
    assert (m["counts"]["trainA"], m["counts"]["trainB"], m["counts"]["testA"]) == (6, 5, 4)
    assert m["rejected"] == [{"file": str(folder / "trainA" / "notes.txt"), "reason": "not an image file (suffix .txt)"}]
    assert m["labels"] == {} and "classes" not in m
    assert out["segmenter"]["available"] is False
    metrics = json.loads((Path(p.paths.eval_reports) / "metrics.json").read_text())
    assert "fid_AtoB" in metrics and "fcn_AtoB_class_iou" not in metrics


def test_aligned_folder_with_labels_json_gets_the_fcn_score(raw, make_params, tmp_path):
    """photo|labels pairs (A on the right, as the authors' cityscapes): the class ids of the photos are
    read from the A colour maps by nearest palette colour, so the FCN-score is available."""
    folder = make_local_folder(raw, tmp_path / "own", "aligned", labels=True)
    p = local(make_params, folder, data__local__layout="aligned", data__local__a_side="right", model="pix2pix")
    out = run_stages(p, "prepare", "segmenter")
    m = out["prepare"]
    assert m["pairs"] == {"train": ["trainA", "trainB"], "test": ["testA", "testB"]}
    assert m["labels"] == {"trainB": "trainB_labels", "testB": "testB_labels"}
    a = np.asarray(Image.open(Path(p.paths.prepared) / "testA" / "00000.png"))
    assert np.array_equal(a, np.asarray(Image.open(raw / "testA" / "00000.png")))  # A = the right half
    assert out["segmenter"]["available"] is True


def test_unaligned_folder_with_class_id_maps(raw, make_params, tmp_path):
    folder = make_local_folder(raw, tmp_path / "own", labels=True)
    (folder / "testB_labels" / "testB_00000.png").unlink()  # that photo cannot be scored: rejected
    m = prepare.run(local(make_params, folder), progress=False)
    assert m["labels"] == {"trainB": "trainB_labels", "testB": "testB_labels"}
    assert m["counts"]["testB"] == m["counts"]["testB_labels"] == 3
    assert any("testB_00000" in r["file"] and "no counterpart" in r["reason"] for r in m["rejected"])


def test_exif_orientation_is_applied(raw, make_params, tmp_path):
    folder = make_local_folder(raw, tmp_path / "own")
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:10] = 255  # white on top once upright
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90-degree clockwise turn
    Image.fromarray(np.rot90(tall, 1)).save(folder / "trainA" / "phone.jpg", exif=exif, quality=100)
    p = local(make_params, folder, prepare__min_size=16)
    prepare.run(p, progress=False)
    img = np.asarray(Image.open(Path(p.paths.prepared) / "trainA" / "phone.png").convert("L"), dtype=float)
    assert img[:6].mean() > 200 and img[-12:].mean() < 50  # upright: white band on top


@pytest.mark.parametrize("case, message", [
    ("missing", "data.local.path is not a folder"),
    ("no_trainB", "missing trainB/ for data.local.layout=unaligned"),
    ("empty_testA", "testA/ empty"),
    ("labels_without_json", "need"),
    ("bad_json", "labels.json: expected"),
    ("only_junk", "domain(s) trainA empty after preparation"),
    ("wrong_layout", "missing train/, test/ for data.local.layout=aligned"),
])
def test_layout_errors_name_the_folder_and_the_fix(raw, make_params, tmp_path, case, message):
    folder = tmp_path / "own"
    if case != "missing":
        make_local_folder(raw, folder, labels=case == "bad_json")
    if case == "no_trainB":
        for f in (folder / "trainB").iterdir():
            f.unlink()
        (folder / "trainB").rmdir()
    elif case == "empty_testA":
        for f in (folder / "testA").iterdir():
            f.unlink()
    elif case == "labels_without_json":
        (folder / "testB_labels").mkdir()
    elif case == "bad_json":
        (folder / "labels.json").write_text('{"classes": ["a", "b"], "palette": [[0, 0, 0]]}')
    elif case == "only_junk":
        for f in (folder / "trainA").iterdir():
            f.write_bytes(b"")
    overrides = {"data__local__layout": "aligned"} if case == "wrong_layout" else {}
    p = local(make_params, folder, **overrides)
    Path(p.paths.prepared).mkdir(parents=True)
    (Path(p.paths.prepared) / "earlier.txt").write_text("kept")
    with pytest.raises(StageError) as e:
        prepare.run(p, progress=False)
    assert message in str(e.value) and str(folder) in str(e.value) and "\n" not in str(e.value)
    assert (Path(p.paths.prepared) / "earlier.txt").read_text() == "kept"  # nothing written is lost


@pytest.mark.long
def test_dvc_reruns_prepare_when_one_image_changes(tmp_path):
    """The folder is a dependency of prepare in dvc.yaml: DVC hashes its content into dvc.lock."""
    repo = make_repo(tmp_path / "repo", {"data.dataset": "local"})
    own = repo / "data" / "own"
    world = SyntheticParams(image_size=32, n_train_a=6, n_train_b=5, n_test=4, n_test_multi=4, seed=0)
    raw = download.generate_synthetic(world, tmp_path / "raw", progress=False)
    make_local_folder(raw, own)
    run(["dvc", "repro", "prepare"], repo)
    status = run(["dvc", "status", "download", "prepare"], repo).stdout
    assert "up to date" in status.lower()
    img = own / "trainA" / "trainA_00000.jpg"
    Image.open(img).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(img)
    status = run(["dvc", "status"], repo).stdout
    assert "prepare:" in status and "data/own" in status and "download:" not in status
    r = run(["dvc", "repro", "prepare"], repo)
    assert "Running stage 'prepare'" in r.stdout and "Running stage 'download'" not in r.stdout


@pytest.mark.slow
def test_a_queued_experiment_trains_on_a_folder_that_dvc_versions(tmp_path):
    """dvc exp run --queue copies the git repository: the images travel as `dvc add`ed subfolders."""
    import subprocess
    import time

    repo = make_repo(tmp_path / "repo", {"data.dataset": "local", "train.n_epochs_decay": 0})
    world = SyntheticParams(image_size=32, n_train_a=6, n_train_b=5, n_test=4, n_test_multi=4, seed=0)
    make_local_folder(download.generate_synthetic(world, tmp_path / "raw", progress=False), repo / "data" / "own")
    run(["dvc", "add", *(f"data/own/{d}" for d in ("trainA", "trainB", "testA", "testB"))], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "my images, versioned by DVC"], repo)
    run(["dvc", "exp", "run", "--queue", "-S", "seed=1", "-n", "mine"], repo)
    run(["dvc", "queue", "start", "-j", "1"], repo)
    for _ in range(200):
        time.sleep(3)
        line = next((x for x in run(["dvc", "queue", "status"], repo).stdout.splitlines() if " mine " in x), "")
        if "Success" in line or "Failed" in line:
            break
    logs = subprocess.run(["dvc", "queue", "logs", "mine"], cwd=repo, capture_output=True, text=True).stdout
    assert "Success" in line, logs[-3000:]
