"""Translating one's own images (python -m pipeline.tools.translate) with a model file, an MLflow
model and the authors' .pth; the MLflow Model of every training (pyfunc, registry, `mlflow models
predict`); and bad input: missing or empty folders, non-images, images below the network's stride."""

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline import translator
from pipeline.data.datasets import to_image, to_tensor
from pipeline.tools import translate as tool
from pipeline.tracking import fluent_store
from tests.helpers import env

AUTHORS = Path(__file__).parent / "fixtures" / "authors"


def photo(path: Path, size=(37, 53), mode="RGB", seed=0, **save) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 4 if mode == "RGBA" else 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGBA" if mode == "RGBA" else "RGB")
    (img if mode in ("RGB", "RGBA") else img.convert(mode)).save(path, **save)
    return path


def translated(out: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(out / name))


@pytest.fixture
def trained(chain):
    """A tiny CycleGAN, trained and logged to MLflow (its generators as MLflow Models)."""
    p, results = chain("train")
    return p, results["train"]["mlflow_run_id"]


def test_any_size_and_mode_keeps_names_and_sizes(trained, tmp_path, capsys):
    p, _ = trained
    src = tmp_path / "mine"
    src.mkdir()
    photo(src / "odd.png")
    photo(src / "gray.png", mode="L", size=(40, 24))
    photo(src / "alpha.png", mode="RGBA", size=(33, 33))
    photo(src / "cam.jpg", size=(48, 32))
    (src / "notes.txt").write_text("skipped: not an image suffix")
    for fit in translator.FITS:
        tool.main([str(src), "--model", p.paths.model, "--out", str(tmp_path / fit), "--fit", fit, "--no-progress",
                   "--batch-size", "2"])
        assert sorted(f.name for f in (tmp_path / fit).iterdir()) == ["alpha.png", "cam.png", "gray.png", "odd.png"]
        assert translated(tmp_path / fit, "odd.png").shape == (53, 37, 3)
        assert translated(tmp_path / fit, "gray.png").shape == (24, 40, 3)
    assert "wrote 4 image(s)" in capsys.readouterr().out


def test_pad_equals_the_generator_at_a_multiple_of_the_stride(trained, tmp_path):
    p, _ = trained
    src = photo(tmp_path / "x.png", size=(32, 32))
    tool.main([str(src), "--model", p.paths.model, "--out", str(tmp_path / "out"), "--direction", "BtoA", "--no-progress"])
    tr = translator.load(p.paths.model, "BtoA")
    with torch.no_grad():
        direct = to_image(tr.net(to_tensor(Image.open(src))[None])[0])
    assert np.array_equal(translated(tmp_path / "out", "x.png"), direct)


@pytest.mark.long
def test_mlflow_model_predicts_loads_back_and_serves_offline(trained, tmp_path, monkeypatch):
    import mlflow

    p, run_id = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", p.mlflow.tracking_uri)
    src = photo(tmp_path / "x.png", size=(36, 28))
    tool.main([str(src), "--model", p.paths.model, "--out", str(tmp_path / "file"), "--no-progress"])
    tool.main([str(src), "--model", f"runs:/{run_id}/generator_AtoB", "--out", str(tmp_path / "run"), "--no-progress"])
    want = translated(tmp_path / "file", "x.png")
    assert np.array_equal(translated(tmp_path / "run", "x.png"), want)

    with fluent_store(p.mlflow.tracking_uri):  # (a bare set_tracking_uri would leak into later tests' subprocesses)
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/generator_AtoB")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    out = model.predict(pd.DataFrame({"image": [src.read_bytes()]}))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out["image"][0]))), want)

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": {"columns": ["image"],
                                                       "data": [[base64.b64encode(src.read_bytes()).decode()]]}}))
    r = subprocess.run([sys.executable, "-m", "mlflow", "models", "predict", "-m", f"runs:/{run_id}/generator_AtoB",
                        "-i", str(request), "-t", "json", "--env-manager", "local", "-o", str(tmp_path / "reply.json")],
                       env={**env(), "MLFLOW_TRACKING_URI": p.mlflow.tracking_uri}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    reply = json.loads((tmp_path / "reply.json").read_text())["predictions"][0]["image"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(reply)))), want)


def test_registered_under_the_name_from_params(chain, tmp_path):
    import mlflow

    p, _ = chain("train", mlflow__register_as="tiny-cyclegan")
    with fluent_store(p.mlflow.tracking_uri):
        versions = {m.name for m in mlflow.MlflowClient().search_model_versions("name LIKE 'tiny-cyclegan-%'")}
        assert versions == {"tiny-cyclegan-AtoB", "tiny-cyclegan-BtoA"}
        assert mlflow.pyfunc.load_model("models:/tiny-cyclegan-BtoA/1").metadata.metadata == {"direction": "BtoA"}
    assert "MLFLOW_TRACKING_URI" not in os.environ  # training and loading left the environment as it was


def test_authors_generator_translates_with_inferred_architecture(tmp_path):
    src = photo(tmp_path / "x.png", size=(30, 22))
    tool.main([str(src), "--model", str(AUTHORS / "latest_net_G_A.pth"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert translated(tmp_path / "out", "x.png").shape == (22, 30, 3)


def test_bicyclegan_samples_and_a_given_style(tmp_path):
    src = photo(tmp_path / "x.png", size=(64, 64))
    style = photo(tmp_path / "style.png", size=(50, 40), seed=3)
    common = [str(src), "--model", str(AUTHORS / "bicyclegan_latest_net_G.pth"), "--no-progress"]
    tool.main([*common, "--out", str(tmp_path / "random"), "--n-samples", "3"])
    samples = [translated(tmp_path / "random", f"x_{k}.png") for k in range(3)]
    assert not np.array_equal(samples[0], samples[1])  # one random code each
    tool.main([*common, "--out", str(tmp_path / "styled"), "--style", str(style),
               "--encoder", str(AUTHORS / "bicyclegan_latest_net_E.pth")])
    assert translated(tmp_path / "styled", "x.png").shape == (64, 64, 3)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder, and no file matches it as a pattern"),
    ("empty", "no image files in this folder"),
    ("not_image", "not an image file (suffix .txt)"),
    ("corrupt", "unreadable image"),
    ("below_stride", "is too small to pad to the network's stride 32 by reflection; use --fit resize"),
    ("collision", "would both be written as x.png"),
    ("no_model", "no such model file"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, message):
    model = str(AUTHORS / "latest_net_G.pth")  # pix2pix U-Net: stride 32
    inputs = [str(tmp_path / "x.png")]
    photo(tmp_path / "x.png", size=(40, 40))
    if case == "missing":
        inputs = [str(tmp_path / "nothing*.png")]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        inputs = [str(tmp_path / "empty")]
    elif case == "not_image":
        (tmp_path / "a.txt").write_text("text")
        inputs = [str(tmp_path / "a.txt")]
    elif case == "corrupt":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
        inputs = [str(tmp_path / "bad.png")]
    elif case == "below_stride":
        photo(tmp_path / "x.png", size=(12, 12))
    elif case == "collision":
        (tmp_path / "sub").mkdir()
        photo(tmp_path / "sub" / "x.jpg")
        inputs.append(str(tmp_path / "sub" / "x.jpg"))
    elif case == "no_model":
        model = str(tmp_path / "model.pt")
    with pytest.raises(SystemExit) as e:
        tool.main([*inputs, "--model", model, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    if case == "below_stride":
        tool.main([*inputs, "--model", model, "--out", str(tmp_path / "out"), "--no-progress", "--fit", "resize"])
        assert translated(tmp_path / "out", "x.png").shape == (12, 12, 3)


def test_wrong_direction_of_a_one_way_model(chain, tmp_path, capsys):
    p, _ = chain("train", model="pix2pix", mlflow__log_model=False)
    photo(tmp_path / "x.png", size=(32, 32))
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "x.png"), "--model", p.paths.model, "--out", str(tmp_path / "o"), "--direction", "BtoA"])
    assert "a pix2pix model translates AtoB only, not BtoA; pass --direction AtoB" in capsys.readouterr().err


def test_a_trained_bicyclegan_samples_and_takes_a_style_through_its_encoder(chain, tmp_path):
    p, _ = chain("train", model="bicyclegan", mlflow__log_model=False)
    src = photo(tmp_path / "x.png", size=(40, 40))
    common = [str(src), "--model", p.paths.model, "--no-progress"]
    tool.main([*common, "--out", str(tmp_path / "random"), "--n-samples", "2", "--seed", "1"])
    assert {f.name for f in (tmp_path / "random").iterdir()} == {"x_0.png", "x_1.png"}
    tool.main([*common, "--out", str(tmp_path / "styled"), "--style", str(photo(tmp_path / "s.png", seed=5))])
    assert translated(tmp_path / "styled", "x.png").shape == (40, 40, 3)


def test_the_mlflow_model_reads_bytes_by_the_prepare_rules():
    from pipeline import mlflow_model

    png = io.BytesIO()
    Image.fromarray(np.zeros((6, 5, 4), np.uint8)).save(png, format="PNG")  # transparent -> white
    assert torch.equal(mlflow_model.decode(png.getvalue()), torch.ones(3, 6, 5))
    for junk, reason in ((b"", "empty image"), (b"\x89PNG broken", "unreadable image")):
        with pytest.raises(ValueError, match=f"input column 'image': {reason}"):
            mlflow_model.decode(junk)


def test_pix2pix_translates_as_its_paper_prescribes_unless_told_eval(chain, tmp_path):
    """pix2pix Sec. 3.3 and the authors' test.py: G in training mode at test time (dropout on, batch-norm
    statistics of each image alone); eval mode on request; CycleGAN and BicycleGAN in eval mode."""
    from pipeline.artifacts import model as model_file
    from pipeline.translate_sets import translate_test_sets

    # unet_64: the smallest U-Net with a dropout block (the authors' put them in the levels below the
    # fifth), at 64px
    p, _ = chain("train", model="pix2pix", mlflow__log_model=False, pix2pix__generator="unet_64",
                 data__synthetic__image_size=64, prepare__load_size=64, train__crop_size=64)
    _, nets = model_file.load(p.paths.model)
    assert not nets["G"].training and any(isinstance(m, torch.nn.Dropout) for m in nets["G"].modules())
    _, nets = model_file.load(p.paths.model, generator_mode="paper")
    assert nets["G"].training
    common = dict(batch_size=4, n_samples=2, device=torch.device("cpu"), progress=False)
    outs = {}
    for name, mode, seed in (("paper", "paper", 0), ("paper_again", "paper", 0), ("paper_seed1", "paper", 1),
                             ("eval", "eval", 0)):
        info = translate_test_sets(p.paths.model, p.paths.prepared, tmp_path / name, seed=seed, generator_mode=mode,
                                   **common)
        assert info["generator_mode"] == ("train" if mode == "paper" else "eval")
        folder = tmp_path / name / "AtoB"
        outs[name] = np.stack([translated(folder, f.name) for f in sorted(folder.iterdir())])
    assert np.array_equal(outs["paper"], outs["paper_again"])  # the dropout draws from the seed
    assert not np.array_equal(outs["paper"], outs["paper_seed1"])
    assert not np.array_equal(outs["paper"], outs["eval"])
    # training mode: an image's translation does not depend on the other images of the batch
    tr = translator.load(p.paths.model, generator_mode="paper")
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    torch.manual_seed(0)
    together = translator.translate(tr, x)
    torch.manual_seed(0)
    alone = torch.cat([translator.translate(tr, x[i:i + 1]) for i in range(3)])
    assert torch.equal(together, alone)


def test_cyclegan_translates_in_eval_mode_under_either_setting(trained):
    from pipeline.artifacts import model as model_file

    p, _ = trained
    for mode in ("paper", "eval"):
        _, nets = model_file.load(p.paths.model, generator_mode=mode)
        assert not any(net.training for net in nets.values())


@pytest.mark.long
def test_a_served_mlflow_model_answers_a_posted_image_as_the_translate_tool(trained, tmp_path):
    """`mlflow models serve` on loopback: POST /invocations with a PNG of odd size, the reply is the translate
    tool's translation of the same file (docs/using-models.md shows the request)."""
    import socket
    import time
    import urllib.request

    p, run_id = trained
    src = photo(tmp_path / "odd.png", size=(37, 29))
    tool.main([str(src), "--model", p.paths.model, "--out", str(tmp_path / "tool"), "--no-progress"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_id}/generator_AtoB",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env={**env(), "MLFLOW_TRACKING_URI": p.mlflow.tracking_uri},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-2000:]
                time.sleep(0.5)
        body = json.dumps({"dataframe_split": {"columns": ["image"],
                                               "data": [[base64.b64encode(src.read_bytes()).decode()]]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())["predictions"][0]["image"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply))))
    assert got.shape == (29, 37, 3) and np.array_equal(got, translated(tmp_path / "tool", "odd.png"))
