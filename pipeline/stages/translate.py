"""Stage `translate`: the trained model (paths.model) + the prepared test images -> translated images
(paths.translated): AtoB/, BtoA/ and the reconstructions AtoBtoA/, BtoAtoB/ for CycleGAN; AtoB/ for
pix2pix; for BicycleGAN translate.n_samples random samples per input (samples/<k>/), AtoB/ = sample 0,
AtoB_encoded/ and latent.pt; for StarGAN <X>to<Y>/ for every ordered pair of domains (a CycleGAN on a pair
of a multi-domain set: its letters, e.g. CtoA/). File names match the inputs; info.json describes the folder.
The layout in full: pipeline/translate_sets.py.
"""

from __future__ import annotations

from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.runtime import configure_threads, resolve_device
from pipeline.translate_sets import translate_test_sets


def run(params: Params, *, progress: bool = True) -> dict:
    t = params.translate
    configure_threads(t.num_threads, "translate.num_threads")
    return translate_test_sets(params.paths.model, params.paths.prepared, params.paths.translated,
                               batch_size=t.batch_size, n_samples=t.n_samples, seed=params.seed,
                               generator_mode=t.generator_mode,
                               device=resolve_device(t.device, "translate.device"), progress=progress)


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    info = run_stage(run, params)
    print(f"translated {', '.join(f'{k}={v}' for k, v in info['counts'].items())} -> {params.paths.translated}")


if __name__ == "__main__":
    main()
