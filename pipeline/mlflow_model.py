"""A trained generator as an MLflow Model (pyfunc flavour): images in, images out.

Each training logs one model per direction its generators translate (generator_AtoB, and
generator_BtoA for CycleGAN), so that

    mlflow.pyfunc.load_model("runs:/<run id>/generator_AtoB").predict(pd.DataFrame({"image": [png_bytes]}))
    mlflow models predict -m runs:/<run id>/generator_AtoB -i input.json -t json --env-manager local

translate images. Input: a DataFrame with one column `image`, each cell the bytes of an encoded image
(PNG, JPEG, ... any size; in JSON, base64, as MLflow encodes binary columns). Output: the same column,
each cell a PNG of the translation at the input's size. Params (optional): `fit` = pad | resize
(pipeline/translator.py), `seed` = the seed of BicycleGAN's random codes. The model's artifact is the
pipeline's own model file (pipeline/artifacts/model.py); its code is this package, so loading it
needs the package installed (pip install -e .). The raw checkpoint stays a run artifact for resuming.
"""

from __future__ import annotations

import io
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import torch
from PIL import Image

from pipeline import translator
from pipeline.data.datasets import to_image, to_tensor
from pipeline.data.images import RejectedImage, decode_rgb_bytes
from pipeline.domains import TWO_DOMAIN_NAMES
from pipeline.tracking import fluent_store

COLUMN = "image"


def encode_png(image: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_image(image)).save(buf, format="PNG")
    return buf.getvalue()


def decode(data: bytes) -> torch.Tensor:
    """Encoded image bytes -> (3, H, W) in [-1, 1], upright RGB, by the prepare stage's rules."""
    try:
        return to_tensor(decode_rgb_bytes(data))
    except RejectedImage as e:
        raise ValueError(f"input column {COLUMN!r}: {e}") from None


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around translator.Translator for one direction of the model file."""

    def __init__(self, direction: str):
        self.direction = direction  # the route's name, as MLmodel's metadata holds it

    def load_context(self, context) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.translator = translator.from_model_file(context.artifacts["model"], self.direction, self.device)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        tr = self.translator
        g = torch.Generator().manual_seed(int(params.get("seed", 0)))
        torch.manual_seed(int(params.get("seed", 0)))  # dropout of a generator in training mode (pix2pix, its paper's protocol)
        out = []
        for data in model_input[COLUMN]:
            x = decode(bytes(data))[None].to(self.device)
            z = torch.randn(1, tr.nz, generator=g).to(self.device) if tr.nz else None
            out.append(encode_png(translator.translate(tr, x, fit=str(params.get("fit", "pad")), z=z)[0]))
        return pd.DataFrame({COLUMN: out})


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    images = Schema([ColSpec("binary", COLUMN)])
    return ModelSignature(inputs=images, outputs=images, params=ParamSchema([
        ParamSpec("fit", "string", "pad"), ParamSpec("seed", "long", 0)]))


def log_generators(uri: str, run_id: str, model_path: str | Path, model: str, example: bytes,
                   register_as: str | None, domains: dict[str, str] | None = None,
                   pair: list[str] | None = None) -> list[str]:
    """Log one pyfunc model per direction the `model` (cyclegan, pix2pix, ...) translates into the
    (already created) run of the store `uri`; register each as <register_as>-<direction> when a name is
    given. Returns the model names."""
    names = []
    with fluent_store(uri), mlflow.start_run(run_id=run_id):
        for route in translator.generator_of(model, domains or TWO_DOMAIN_NAMES, pair):
            direction = str(route)
            name = f"generator_{direction}"
            mlflow.pyfunc.log_model(
                # the direction also goes into MLmodel's metadata, where the translate command reads it
                name=name, python_model=GeneratorModel(direction), artifacts={"model": str(model_path)},
                metadata={"direction": direction}, signature=signature(),
                input_example=pd.DataFrame({COLUMN: [example]}),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "pillow", "pandas", "numpy"],
                registered_model_name=f"{register_as}-{direction}" if register_as else None)
            names.append(name)
    return names
