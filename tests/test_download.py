"""The download stage against a local HTTP server on 127.0.0.1 serving archives the tests build."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import archives
from pipeline.data.archives import ChecksumError, DownloadError, UnsafeArchiveError, fetch_archive
from pipeline.stages import download, prepare
from tests.helpers import make_cyclegan_zip, make_pix2pix_tar, png_bytes, serve


def test_download_extracts_and_records_the_checksum(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_cyclegan_zip(site / "horse2zebra.zip")
    with serve(site) as (url, _):
        files = fetch_archive(f"{url}/horse2zebra.zip", tmp_path / "raw", None, progress=False)
    assert sorted(p.name for p in (files / "horse2zebra").iterdir()) == ["testA", "testB", "trainA", "trainB"]
    record = json.loads((tmp_path / "raw" / "source.json").read_text())
    assert record["sha256"] == archives.sha256_file(site / "horse2zebra.zip")


def test_partial_download_resumes_with_a_range_request(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    blob = make_cyclegan_zip(site / "a.zip", n=20).read_bytes()
    dest = tmp_path / "out" / "a.zip"
    dest.parent.mkdir()
    dest.with_name("a.zip.part").write_bytes(blob[:1000])
    with serve(site) as (url, handler):
        archives.download(f"{url}/a.zip", dest, progress=False)
    assert dest.read_bytes() == blob
    assert handler.requests == [("/a.zip", "bytes=1000-")]


def test_connection_drop_mid_file_is_resumed(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    blob = make_cyclegan_zip(site / "a.zip", n=20).read_bytes()
    with serve(site, drop_after=3000) as (url, handler):
        archives.download(f"{url}/a.zip", tmp_path / "a.zip", progress=False, backoff=0)
    assert (tmp_path / "a.zip").read_bytes() == blob
    assert handler.requests == [("/a.zip", None), ("/a.zip", "bytes=3000-")]


def test_missing_file_is_a_clear_error(tmp_path):
    with serve(tmp_path) as (url, _):
        with pytest.raises(DownloadError, match="HTTP 404.*data.dataset or data.url"):
            archives.download(f"{url}/nope.zip", tmp_path / "nope.zip", progress=False)


def test_checksum_is_verified_on_rerun_and_a_mismatch_is_not_extracted(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_cyclegan_zip(site / "h.zip")
    raw = tmp_path / "raw"
    with serve(site) as (url, _):
        fetch_archive(f"{url}/h.zip", raw, None, progress=False)
        fetch_archive(f"{url}/h.zip", raw, None, progress=False)  # re-run: verified, nothing refetched
        # the archive on disk is damaged: detected, moved aside, not extracted
        (raw / "h.zip").write_bytes(b"garbage")
        (raw / "files").rename(raw / "old_files")
        with pytest.raises(ChecksumError, match="does not match"):
            fetch_archive(f"{url}/h.zip", raw, None, progress=False)
        assert (raw / "h.zip.corrupt").exists() and not (raw / "files").exists()
        # the next run downloads it again and the recorded checksum matches
        fetch_archive(f"{url}/h.zip", raw, None, progress=False)
    assert (raw / "files").is_dir()


def test_pinned_checksum_mismatch(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_cyclegan_zip(site / "h.zip")
    with serve(site) as (url, _):
        with pytest.raises(ChecksumError, match="data.sha256 in params.yaml"):
            fetch_archive(f"{url}/h.zip", tmp_path / "raw", "0" * 64, progress=False)
    assert not (tmp_path / "raw" / "files").exists()


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("set/ok.txt")
        ok.size = 1
        tf.addfile(ok, io.BytesIO(b"x"))
        if member.isfile():
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
        else:
            tf.addfile(member)
    return path


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("../escape.txt"),
    tarfile.TarInfo("set/../../escape.txt"),
    tarfile.TarInfo("/tmp/absolute.txt"),
    _link("set/link", "../../etc/passwd"),
    _link("set/link", "/etc/passwd"),
    _link("set/hard", "../../outside", tarfile.LNKTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-escape", "symlink-absolute", "hardlink-escape"])
def test_hostile_tar_members_are_refused(tmp_path, member):
    archive = _evil_tar(tmp_path / "evil.tar", member)
    target = tmp_path / "out" / "files"
    with pytest.raises(UnsafeArchiveError, match="refused"):
        archives.safe_extract(archive, target)
    assert not target.exists()  # nothing half-extracted
    assert not (tmp_path / "escape.txt").exists()


def test_hostile_zip_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/ok.txt", "x")
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(UnsafeArchiveError, match="escapes the target"):
        archives.safe_extract(archive, tmp_path / "files")


def test_symlink_inside_target_is_allowed(tmp_path):
    archive = _evil_tar(tmp_path / "ok.tar", _link("set/alias.txt", "ok.txt"))
    archives.safe_extract(archive, tmp_path / "files")
    assert (tmp_path / "files" / "set" / "alias.txt").read_text() == "x"


def download_and_prepare(make_params, tmp_path, dataset: str, archive: str, build, n: int):
    """Serve an archive built by `build` on 127.0.0.1 and run the download and prepare stages on it."""
    site = tmp_path / "site"
    site.mkdir()
    build(site / archive, n=n)
    with serve(site) as (url, _):
        p = make_params(data__dataset=dataset, data__url=f"{url}/{archive}")
        download.run(p.data, Path(p.paths.raw), progress=False)
    return p, prepare.run(p, progress=False)


def test_download_and_prepare_stages_on_an_unaligned_archive(make_params, tmp_path):
    p, manifest = download_and_prepare(make_params, tmp_path, "horse2zebra", "horse2zebra.zip", make_cyclegan_zip, 3)
    assert manifest["counts"] == {"testA": 3, "testB": 3, "trainA": 3, "trainB": 3}
    assert manifest["pairs"] == {"train": None, "test": None}
    img = Image.open(Path(p.paths.prepared) / "trainA" / "n000.png")
    assert img.size == (32, 32) and img.mode == "RGB"


def test_download_and_prepare_stages_on_an_aligned_archive(make_params, tmp_path):
    p, manifest = download_and_prepare(make_params, tmp_path, "facades_pix2pix", "facades.tar.gz", make_pix2pix_tar, 2)
    assert manifest["counts"] == {"testA": 2, "testB": 2, "trainA": 2, "trainB": 2}
    assert manifest["pairs"]["train"] == ["trainA", "trainB"]
    # facades: photo|labels, and our A is the labels side (right half)
    src = Image.open(io.BytesIO(png_bytes(0, size=(80, 40))))
    right = np.asarray(src.crop((40, 0, 80, 40)).resize((32, 32), Image.BICUBIC))
    got = np.asarray(Image.open(Path(p.paths.prepared) / "trainA" / "0.png"))
    assert np.array_equal(got, right)


def make_cityscapes_tar(path: Path, n=2) -> Path:
    """pix2pix's Cityscapes layout: photo | colour label map, side by side."""
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "val"):
            for i in range(n):
                label = np.zeros((40, 40, 3), np.uint8)
                label[:20] = (70, 130, 180)                     # sky
                label[20:, :30] = (128, 64, 128)                # road
                label[20:, 30:] = (0, 0, 0)                     # unlabeled
                label[0, 0] = (75, 128, 178)                    # a slightly off colour (JPEG noise)
                photo = np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(np.concatenate([photo, label], 1)).save(buf, format="PNG")
                info = tarfile.TarInfo(f"cityscapes/{split}/{i}.png")
                info.size = len(buf.getvalue())
                tf.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_cityscapes_colour_labels_become_class_ids_for_the_fcn_score(make_params, tmp_path):
    p, manifest = download_and_prepare(make_params, tmp_path, "cityscapes_pix2pix", "cityscapes.tar.gz",
                                       make_cityscapes_tar, 2)
    assert manifest["labels"] == {"trainB": "trainB_labels", "testB": "testB_labels"}
    assert manifest["classes"][0] == "road" and len(manifest["classes"]) == 19 and manifest["ignore_label"] == 255
    ids = np.asarray(Image.open(Path(p.paths.prepared) / "testB_labels" / "0.png"))
    assert ids.shape == (32, 32)
    assert ids[2, 2] == manifest["classes"].index("sky") and ids[0, 0] == manifest["classes"].index("sky")
    assert ids[30, 2] == manifest["classes"].index("road")
    assert ids[30, 30] == 255  # unlabeled stays out of the score
