"""The prepare stage: manifest, conversions, and bad input that is listed, never silently dropped."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import StageError
from pipeline.stages import download, prepare


@pytest.fixture
def raw(make_params):
    p = make_params()
    folder = download.run(p.data, Path(p.paths.raw), progress=False)
    return p, folder


def test_manifest_counts_sizes_and_hashes(raw):
    p, _ = raw
    m = prepare.run(p, progress=False)
    out = Path(p.paths.prepared)
    assert m["counts"]["trainA"] == 6 and m["counts"]["trainB"] == 5 and m["counts"]["testA"] == 4
    assert m["pairs"] == {"train": ["paired_trainA", "trainB"], "test": ["testA", "testB"]}
    assert m["labels"] == {"trainB": "trainB_labels", "testB": "testB_labels"}
    assert m["classes"][0] == "sky" and len(m["palette"]) == len(m["classes"])
    assert m["rejected"] == []
    for rel, digest in m["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert json.loads((out / "manifest.json").read_text()) == m


def test_resize_to_load_size_keeps_label_ids_exact(make_params):
    p = make_params(prepare__load_size=48)
    download.run(p.data, Path(p.paths.raw), progress=False)
    prepare.run(p, progress=False)
    out = Path(p.paths.prepared)
    assert Image.open(out / "trainB" / "00000.png").size == (48, 48)
    ids = np.asarray(Image.open(out / "testB_labels" / "00000.png"))
    raw_ids = np.asarray(Image.open(Path(p.paths.raw) / "synthetic" / "testB_labels" / "00000.png"))
    assert ids.shape == (48, 48) and set(np.unique(ids)) <= set(np.unique(raw_ids))


def _save(path: Path, img: Image.Image, **kw):
    img.save(path, **kw)


def test_bad_files_are_listed_with_their_reason(raw):
    p, folder = raw
    a = folder / "trainA"
    (a / "zero.png").write_bytes(b"")
    (a / "notes.txt").write_text("hello")
    (a / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    good = (a / "00000.png").read_bytes()
    (a / "truncated.png").write_bytes(good[: len(good) // 2])
    _save(a / "tiny.png", Image.new("RGB", (8, 8)))
    m = prepare.run(p, progress=False)
    reasons = {r["file"]: r["reason"] for r in m["rejected"]}
    reasons = {str(Path(k).relative_to(folder)): v for k, v in reasons.items()}
    assert reasons["trainA/zero.png"] == "empty file (0 bytes)"
    assert reasons["trainA/notes.txt"].startswith("not an image file")
    assert reasons["trainA/corrupt.png"].startswith("unreadable image")
    assert reasons["trainA/truncated.png"].startswith("unreadable image")
    assert "too small: 8x8" in reasons["trainA/tiny.png"]
    assert m["counts"]["trainA"] == 6


def test_unusual_modes_are_converted_to_rgb(raw):
    p, folder = raw
    a = folder / "trainA"
    rgb = Image.open(a / "00000.png").convert("RGB")
    _save(a / "gray.png", rgb.convert("L"))
    _save(a / "rgba.png", rgb.convert("RGBA"))
    _save(a / "palette.png", rgb.convert("P"))
    _save(a / "cmyk.jpg", rgb.convert("CMYK"))
    sixteen = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    _save(a / "sixteen.png", Image.fromarray(sixteen))
    m = prepare.run(p, progress=False)
    assert m["rejected"] == []
    out = Path(p.paths.prepared) / "trainA"
    for name in ("gray", "rgba", "palette", "cmyk", "sixteen"):
        img = Image.open(out / f"{name}.png")
        assert img.mode == "RGB" and img.size == (32, 32), name
    # 16-bit is rescaled to 8 bits, not clipped to white
    assert np.array_equal(np.asarray(Image.open(out / "sixteen.png"))[..., 0], np.asarray(rgb.convert("L")))


def test_decompression_bomb_is_refused(make_params):
    p = make_params(prepare__max_pixels=500)
    download.run(p.data, Path(p.paths.raw), progress=False)
    with pytest.raises(StageError, match="empty after preparation"):
        prepare.run(p, progress=False)
    p = make_params(prepare__max_pixels=1100)  # 32x32 = 1024 pixels pass; add one bigger image
    folder = download.run(p.data, Path(p.paths.raw), progress=False)
    Image.new("RGB", (40, 40)).save(folder / "trainA" / "bomb.png")
    m = prepare.run(p, progress=False)
    assert any(r["file"].endswith("bomb.png") and "decompression bomb" in r["reason"] for r in m["rejected"])


def test_unpaired_test_file_is_rejected(raw):
    p, folder = raw
    (folder / "testB" / "00001.png").unlink()
    m = prepare.run(p, progress=False)
    reasons = {str(Path(r["file"]).relative_to(folder)): r["reason"] for r in m["rejected"]}
    assert reasons["testA/00001.png"] == "no counterpart in testB"
    assert reasons["testB_labels/00001.png"] == "no counterpart in testB"
    assert m["counts"]["testA"] == m["counts"]["testB"] == 3


def test_empty_domain_fails_and_keeps_the_previous_output(raw):
    p, folder = raw
    prepare.run(p, progress=False)
    before = (Path(p.paths.prepared) / "manifest.json").read_text()
    for f in (folder / "trainB").iterdir():
        f.write_bytes(b"")
    with pytest.raises(StageError, match=r"domain\(s\) trainB empty.*trainB/00000.png: empty file"):
        prepare.run(p, progress=False)
    assert (Path(p.paths.prepared) / "manifest.json").read_text() == before
    leftovers = [x.name for x in Path(p.paths.prepared).parent.iterdir() if x.name.endswith(".tmp")]
    assert leftovers == []


def test_missing_raw_dataset_names_the_stage_to_run(make_params):
    with pytest.raises(StageError, match="run the download stage first"):
        prepare.run(make_params(), progress=False)


def test_images_smaller_than_the_crop_or_huge_are_resized_to_load_size(raw):
    p, folder = raw
    assert p.train.crop_size == 32 and p.prepare.min_size == 16
    Image.new("RGB", (20, 24), (10, 200, 30)).save(folder / "trainA" / "small.png")  # < crop, >= min_size
    Image.new("RGB", (3000, 2000), (200, 10, 30)).save(folder / "trainA" / "huge.png")  # large, not a bomb
    m = prepare.run(p, progress=False)
    assert m["rejected"] == []
    for name in ("small", "huge"):
        img = Image.open(Path(p.paths.prepared) / "trainA" / f"{name}.png")
        assert img.size == (32, 32), name


def test_a_missing_domain_folder_fails_naming_it(raw):
    import shutil

    p, folder = raw
    shutil.rmtree(folder / "trainB")
    with pytest.raises(StageError, match=r"domain\(s\) trainB empty"):
        prepare.run(p, progress=False)
