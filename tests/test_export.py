"""Exported generators (python -m pipeline.tools.export): every model's ONNX graph equals PyTorch eager in
onnxruntime at two sizes, one of them odd before the translate tool's padding; its metadata; pix2pix's test
mode; the translate tool on an .onnx file without torch; and bad input, one line each with nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from pipeline import onnx_translator, translator
from pipeline.errors import StageError
from pipeline.tools import export as export_tool
from pipeline.tools import translate as translate_tool
from tests.helpers import env

MODELS = {  # model -> (overrides of the tiny configuration, the directions exported)
    "cyclegan": ({}, ["AtoB", "BtoA"]),
    "pix2pix": ({}, ["AtoB"]),
    "bicyclegan": ({}, ["AtoB"]),
    "stargan": ({"data__dataset": "synthetic_multi"}, [None]),
    "cut": ({}, ["AtoB"]),  # FastCUT has the same generator
}
SIZES = [(32, 32), (37, 53)]  # a multiple of every tiny network's stride, and an odd size the tool pads


def eager(tr: translator.Translator, x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    zt = None if z is None else torch.from_numpy(z)
    return translator.translate(tr, torch.from_numpy(x), z=zt).numpy()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_matches_pytorch_in_onnxruntime(chain, tmp_path, model):
    overrides, directions = MODELS[model]
    p, _ = chain("train", model=model, mlflow__log_model=False, **overrides)
    mode = ["--generator-mode", "eval"] if model == "pix2pix" else []
    rng = np.random.default_rng(0)
    for direction in directions:
        out = tmp_path / f"{model}_{direction}.onnx"
        export_tool.main(["--model", p.paths.model, "--out", str(out), *mode, *(["--direction", direction] if direction else [])])
        ort = onnx_translator.load(out)
        targets = list(ort.domains) if ort.multi_domain else [None]
        for target in targets:
            tr = translator.load(p.paths.model, direction, generator_mode="eval", target=target)
            for w, h in SIZES:
                x = rng.uniform(-1, 1, (2, 3, h, w)).astype(np.float32)
                z = rng.standard_normal((2, tr.nz)).astype(np.float32) if tr.nz else None
                got = onnx_translator.translate(ort, x, z=z, target=target)
                assert got.shape == x.shape
                assert np.abs(got - eager(tr, x, z)).max() <= 1e-4, (model, direction, target, (w, h))


def test_the_file_says_what_it_is(chain, tmp_path):
    p, _ = chain("train", mlflow__log_model=False)
    out = tmp_path / "g.onnx"
    export_tool.main(["--model", p.paths.model, "--direction", "BtoA", "--out", str(out), "--opset", "17"])
    graph = onnx.load(str(out))
    meta = {m.key: m.value for m in graph.metadata_props}
    assert meta["pipeline.model"] == "cyclegan" and meta["pipeline.direction"] == "BtoA"
    assert json.loads(meta["pipeline.domains"]) == {"A": "label", "B": "day"}
    assert meta["pipeline.fingerprint"] == torch.load(p.paths.model, weights_only=True)["fingerprint"]
    assert "[-1, 1]" in meta["pipeline.normalisation"] and meta["pipeline.opset"] == "17"
    assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 17
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]  # any batch and any size


def test_pix2pix_in_its_papers_test_mode_is_refused_unless_exported_in_eval_mode(chain, tmp_path, capsys):
    p, _ = chain("train", model="pix2pix", mlflow__log_model=False)
    out = tmp_path / "p.onnx"
    with pytest.raises(SystemExit):
        export_tool.main(["--model", p.paths.model, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training mode" in err[0] and "--generator-mode eval" in err[0]
    assert not out.exists()
    # what an eval-mode graph cannot reproduce: the paper's test mode (dropout, each image's own statistics)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    torch.manual_seed(0)
    paper = eager(translator.load(p.paths.model, generator_mode="paper"), x, None)
    export_tool.main(["--model", p.paths.model, "--out", str(out), "--generator-mode", "eval"])
    assert np.abs(onnx_translator.translate(onnx_translator.load(out), x) - paper).max() > 1e-3


def test_the_translate_tool_runs_an_onnx_file_without_torch(chain, tmp_path):
    p, _ = chain("train", mlflow__log_model=False)
    out = tmp_path / "g.onnx"
    export_tool.main(["--model", p.paths.model, "--out", str(out)])
    src = tmp_path / "mine"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"odd.png": (37, 53), "square.png": (32, 32), "wide.png": (48, 20)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(src / name)
    script = ("import runpy, sys\n"
              "sys.argv = ['translate', *sys.argv[1:]]\n"
              "try:\n    runpy.run_module('pipeline.tools.translate', run_name='__main__')\n"
              "finally:\n    print('torch imported' if 'torch' in sys.modules else 'no torch')\n")
    r = subprocess.run([sys.executable, "-c", script, str(src), "--model", str(out), "--out", str(tmp_path / "onnx"),
                        "--batch-size", "2", "--no-progress"], capture_output=True, text=True, env=env(), cwd=tmp_path)
    assert r.stdout.strip().splitlines()[-1] == "no torch", r.stdout + r.stderr
    assert r.returncode == 0, r.stderr
    translate_tool.main([str(src), "--model", p.paths.model, "--out", str(tmp_path / "torch"), "--batch-size", "2",
                         "--no-progress", "--generator-mode", "eval"])
    for name in ("odd.png", "square.png", "wide.png"):  # the same padding, names and sizes as a model file
        a = np.asarray(Image.open(tmp_path / "onnx" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "torch" / name), dtype=int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_bad_input_is_one_line_and_writes_nothing(chain, tmp_path, capsys):
    p, _ = chain("train", mlflow__log_model=False)
    out = tmp_path / "g.onnx"
    export_tool.main(["--model", p.paths.model, "--out", str(out)])
    ort = onnx_translator.load(out)
    not_a_model = tmp_path / "notes.onnx"
    not_a_model.write_text("not a model")
    with pytest.raises(StageError, match="not an ONNX model"):
        onnx_translator.load(not_a_model)
    foreign = tmp_path / "foreign.onnx"
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    onnx.save(graph, str(foreign))
    with pytest.raises(StageError, match="not a generator exported by this pipeline"):
        onnx_translator.load(foreign)
    with pytest.raises(StageError, match=r"shape \(N, 3, H, W\)"):
        onnx_translator.translate(ort, np.zeros((1, 1, 32, 32), np.float32))
    capsys.readouterr()
    for argv, says in ([[str(tmp_path), "--model", str(not_a_model)], "not an ONNX model"],
                       [[str(tmp_path), "--model", str(out), "--target", "dusk"], "--target is for a multi-domain"],
                       [[str(tmp_path), "--model", str(tmp_path / "missing.pt")], "no such model file"]):
        with pytest.raises(SystemExit):
            translate_tool.main([*argv, "--out", str(tmp_path / "written"), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "written").exists() or not any((tmp_path / "written").iterdir())


def test_a_missing_code_or_label_is_one_line(chain, tmp_path):
    p, _ = chain("train", model="bicyclegan", mlflow__log_model=False)
    out = tmp_path / "b.onnx"
    export_tool.main(["--model", p.paths.model, "--out", str(out)])
    with pytest.raises(StageError, match="needs a latent code z"):
        onnx_translator.translate(onnx_translator.load(out), np.zeros((1, 3, 32, 32), np.float32))
    p, _ = chain("train", model="stargan", data__dataset="synthetic_multi", mlflow__log_model=False)
    out = tmp_path / "s.onnx"
    export_tool.main(["--model", p.paths.model, "--out", str(out)])
    with pytest.raises(StageError, match="pass --target"):
        onnx_translator.translate(onnx_translator.load(out), np.zeros((1, 3, 32, 32), np.float32))


def test_a_file_that_is_not_a_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        export_tool.main(["--model", str(bad), "--out", str(tmp_path / "g.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0], err
    assert [f.name for f in tmp_path.iterdir()] == ["model.pt"]  # no export, and no temporary file left behind


@pytest.mark.parametrize("source", ["runs", "authors"])
def test_an_mlflow_model_and_an_authors_generator_export_too(chain, tmp_path, source):
    """The export reads every source the translate tool reads: an MLflow model (runs:/) and the authors' .pth."""
    authors = Path(__file__).parent / "fixtures" / "authors" / "latest_net_G_A.pth"
    if source == "runs":
        p, results = chain("train")
        model, env_uri = f"runs:/{results['train']['mlflow_run_id']}/generator_BtoA", p.mlflow.tracking_uri
    else:
        model, env_uri = str(authors), None
    out = tmp_path / "g.onnx"
    with pytest.MonkeyPatch.context() as mp:
        if env_uri:
            mp.setenv("MLFLOW_TRACKING_URI", env_uri)
        export_tool.main(["--model", model, "--out", str(out)])
        tr = translator.load(model, generator_mode="eval")
    ort = onnx_translator.load(out)
    assert (ort.model, ort.direction) == (("cyclegan", "BtoA") if source == "runs" else ("authors", "AtoB"))
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 37, 53)).astype(np.float32)
    assert np.abs(onnx_translator.translate(ort, x) - eager(tr, x, None)).max() <= 1e-4
