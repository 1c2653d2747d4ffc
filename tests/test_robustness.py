"""Faults other than a killed process: a full disk, an unreachable tracking server, params that
contradict the data. Each would lose work or hang without its handling."""

import errno
import os
import socket
import tarfile
import time
from pathlib import Path

import pytest
import torch

from pipeline import checkpoint, cli
from pipeline.data import archives
from pipeline.errors import ConfigError, StageError
from pipeline.stages import download, evaluate, prepare, record, train, translate
from pipeline.tracking import TrackingError
from tests.helpers import make_cyclegan_zip, make_pix2pix_tar, serve


def disk_full(path="") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


# --- disk full ------------------------------------------------------------------------------------

def test_disk_full_mid_download_keeps_the_partial_file_and_a_rerun_resumes(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    blob = make_cyclegan_zip(site / "a.zip", n=20).read_bytes()
    dest = tmp_path / "raw" / "a.zip"
    real_open = open

    class FillingFile:
        """A file on a disk with room for 5000 more bytes."""
        def __init__(self, f):
            self.f, self.room = f, 5000

        def write(self, block):
            if len(block) > self.room:
                self.f.write(block[: self.room])
                self.room = 0
                raise disk_full(dest)
            self.room -= len(block)
            return self.f.write(block)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(archives, "open", lambda *a, **k: FillingFile(real_open(*a, **k)), raising=False)
    with serve(site) as (url, handler):
        start = time.monotonic()
        with pytest.raises(OSError) as e:
            archives.download(f"{url}/a.zip", dest, progress=False)
        assert e.value.errno == errno.ENOSPC and time.monotonic() - start < 5  # not retried: it cannot help
        assert len(handler.requests) == 1
        assert not dest.exists() and dest.with_name("a.zip.part").stat().st_size == 5000
        monkeypatch.undo()  # space freed
        archives.download(f"{url}/a.zip", dest, progress=False)
    assert dest.read_bytes() == blob and handler.requests[-1] == ("/a.zip", "bytes=5000-")


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_disk_full_mid_extraction_leaves_no_dataset_a_later_stage_would_take(make_params, tmp_path, monkeypatch, kind):
    site = tmp_path / "site"
    site.mkdir()
    if kind == "zip":
        name, dataset = "horse2zebra.zip", "horse2zebra"
        make_cyclegan_zip(site / name)
        cls, method = archives.zipfile.ZipFile, "extractall"
    else:
        name, dataset = "facades.tar.gz", "facades_pix2pix"
        make_pix2pix_tar(site / name)
        cls, method = tarfile.TarFile, "extractall"
    real = getattr(cls, method)

    def extract_then_fill(self, path, *args, **kwargs):
        first = self.getmembers()[:2] if kind == "tar" else self.namelist()[:2]
        real(self, path, first, **({"filter": "data"} if kind == "tar" else {}))  # some files land...
        raise disk_full(Path(path) / "next")  # ...then the disk is full
    monkeypatch.setattr(cls, method, extract_then_fill)
    with serve(site) as (url, _):
        p = make_params(data__dataset=dataset, data__url=f"{url}/{name}")
        raw = Path(p.paths.raw) / dataset
        with pytest.raises(OSError):
            download.run(p.data, Path(p.paths.raw), progress=False)
        assert not (raw / "files").exists()
        assert [x.name for x in raw.iterdir() if x.name.startswith(".")] == []  # no temporary folder left
        with pytest.raises(StageError, match="no '.*/' folder found; is data/raw complete"):
            prepare.run(p, progress=False)
        monkeypatch.undo()
        download.run(p.data, Path(p.paths.raw), progress=False)  # the kept archive is extracted, not refetched
        assert prepare.run(p, progress=False)["counts"]["testA"] >= 2


def test_disk_full_while_generating_keeps_the_previous_dataset(make_params, monkeypatch):
    p = make_params()
    folder = download.run(p.data, Path(p.paths.raw), progress=False)
    before = sorted(x.name for x in (folder / "trainA").iterdir())
    calls = {"n": 0}
    real = download.save_png

    def filling(path, array):
        calls["n"] += 1
        if calls["n"] > 5:
            raise disk_full(path)
        real(path, array)
    monkeypatch.setattr(download, "save_png", filling)
    with pytest.raises(OSError):
        download.run(p.data, Path(p.paths.raw), progress=False)
    assert sorted(x.name for x in (folder / "trainA").iterdir()) == before
    assert [x.name for x in folder.parent.iterdir()] == ["synthetic"]


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(prepared, monkeypatch):
    p = prepared()
    ckpt = Path(p.paths.checkpoints)
    real, calls = checkpoint.torch.save, {"n": 0}

    def filling(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the checkpoint of step 6: half written, then the disk is full
            f.write(b"\x80" * 100)  # f: the open temporary file
            raise disk_full(f.name)
        return real(obj, f, *args, **kwargs)
    monkeypatch.setattr(checkpoint.torch, "save", filling)
    with pytest.raises(OSError):
        train.train(p, progress=False)
    assert checkpoint.load(ckpt / "latest.pt")["step"] == 3
    assert sorted(x.name for x in ckpt.iterdir()) == ["latest.pt", "previous.pt"]


def test_a_stage_reports_a_full_disk_in_one_line(capsys):
    def work():
        raise disk_full("data/prepared/.prepared.x.tmp/a.png")
    with pytest.raises(SystemExit) as e:
        cli.run_stage(work)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "disk full while writing data/prepared/.prepared.x.tmp/a.png" in err
    assert "Free space and re-run" in err


def test_other_os_errors_are_not_mislabelled_as_a_full_disk():
    def work():
        raise PermissionError(errno.EACCES, "Permission denied", "x")
    with pytest.raises(PermissionError):
        cli.run_stage(work)


# --- tracking -------------------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_fails_fast_before_training(prepared, monkeypatch):
    p = prepared()
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    with pytest.raises(TrackingError, match=rf"MLflow tracking server {uri} is unreachable.*MLFLOW_TRACKING_URI"):
        train.train(p, progress=False)
    assert time.monotonic() - start < 30  # MLflow's own retries would take minutes
    assert not Path(p.paths.checkpoints).exists() and not Path(p.paths.model).exists()


def test_an_unwritable_tracking_store_is_a_clear_error(prepared, tmp_path):
    p = prepared(mlflow__tracking_uri=f"sqlite:///{tmp_path}/no/such/folder/mlflow.db")
    with pytest.raises(TrackingError, match="folder .*no/such/folder is missing or not writable"):
        train.train(p, progress=False)


@pytest.mark.long
def test_an_unreachable_store_stops_only_the_record_stage_in_one_line_and_loses_nothing(chain, monkeypatch):
    """The evaluation needs no store: it writes its reports whatever MLflow does; the record stage, which copies them
    into the run, fails in seconds naming the store and the fix, and the reports stay as they were."""
    p, _ = chain("classifier", train__n_epochs=0, train__n_epochs_decay=0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    evaluate.run(p)
    written = {f.name: f.read_bytes() for f in Path(p.paths.eval_reports).iterdir()}
    tick = time.monotonic()
    with pytest.raises(StageError, match=r"unreachable.*the reports in .* are complete: rerun `dvc repro` when the store"):
        record.run(p)
    assert time.monotonic() - tick < 30
    assert {f.name: f.read_bytes() for f in Path(p.paths.eval_reports).iterdir()} == written


# --- params that contradict the data ---------------------------------------------------------------

def test_kid_subset_larger_than_the_test_set_fails_before_work(make_params, prepared):
    with pytest.raises(ConfigError, match=r"evaluate.kid_subset_size=5 is larger than the test set \(4 images"):
        make_params(evaluate__kid_subset_size=5)  # the embedded set's size is known from params
    # a downloaded set's size is known once prepared: train refuses before building anything
    p = prepared(evaluate__kid_subset_size=4)
    object.__setattr__(p.evaluate, "kid_subset_size", 50)
    with pytest.raises(ConfigError, match="kid_subset_size=50 is larger than the test set"):
        train.train(p, progress=False)
    assert not Path(p.paths.checkpoints).exists()


# --- files written by another version ------------------------------------------------------------

def test_a_model_file_of_another_version_is_one_line_naming_it_and_the_fix(prepared, capsys):
    p = prepared()
    checkpoint.save(p.paths.model, {"model": "cyclegan", "nets": {}})  # an older layout: keys missing
    with pytest.raises(SystemExit) as e:
        cli.run_stage(translate.run, p, progress=False)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {p.paths.model}: a model file of another version") and "dvc repro train" in err


def test_a_model_file_whose_weights_do_not_fit_its_networks_is_a_clear_error(prepared):
    p = prepared(train__n_epochs=0, train__n_epochs_decay=0)
    train.train(p, progress=False)
    state = checkpoint.load(p.paths.model)
    state["nets"]["G_A"]["spec"]["kwargs"]["ngf"] = 8  # weights of ngf=4 under a spec of ngf=8
    checkpoint.save(p.paths.model, state)
    with pytest.raises(StageError, match=r"network G_A does not rebuild \(RuntimeError: .*\); re-create it"):
        translate.run(p, progress=False)


def test_a_file_that_is_no_checkpoint_of_ours_names_the_stage_that_writes_it(prepared):
    p = prepared()
    torch.save({"something": 1}, p.paths.model)
    with pytest.raises(StageError, match="not a checkpoint of this pipeline's format 1"):
        translate.run(p, progress=False)


def test_an_atomic_write_has_the_permissions_of_a_plain_one(tmp_path):
    """tempfile makes its files 0600 and folders 0700: an output renamed into place gets what the umask gives a
    plain write, so that a team's shared outputs stay readable."""
    from pipeline.io import atomic_dir, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "file.txt", "x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "file.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
