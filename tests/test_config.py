import copy
import importlib
import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError, flatten, load_params, parse_params, to_dict
from tests.helpers import REPO, repo_params_dict, set_key


def test_repository_params_load():
    p = load_params(REPO / "params.yaml")
    assert p.lambda_cycle == 10.0 and p.lambda_identity == 0.5 and p.pool_size == 50
    assert p.data.dataset == "synthetic"


def test_ablation_knobs_are_top_level_keys():
    # `dvc exp run -S lambda_cycle=5` only works on keys that exist at the top level of params.yaml
    d = repo_params_dict()
    for key in ("lambda_cycle", "lambda_identity", "pool_size"):
        assert key in d


def test_int_is_accepted_for_a_float_knob():
    # what `-S lambda_cycle=5` writes into params.yaml
    d = repo_params_dict()
    d["lambda_cycle"] = 5
    assert parse_params(d).lambda_cycle == 5.0


def test_every_field_round_trips():
    p = load_params(REPO / "params.yaml")
    assert parse_params(to_dict(p)) == p
    assert "data.synthetic.image_size" in flatten(to_dict(p))


@pytest.mark.parametrize("key, value, expect", [
    ("lambda_cycel", 1.0, ["unknown key(s) lambda_cycel", "allowed keys: lambda_cycle"]),
    ("data.synthetic.n_trian_a", 3, ["data.synthetic: unknown key(s) n_trian_a", "n_train_a"]),
    ("lambda_cycle", "ten", ["lambda_cycle: expected a number", "'ten'"]),
    ("lambda_cycle", -1.0, ["lambda_cycle: -1.0 is out of range", "[0.0, inf]"]),
    ("pool_size", 2.5, ["pool_size: expected an integer"]),
    ("pool_size", True, ["pool_size: expected an integer"]),
    ("data.dataset", "horse2zebar", ["data.dataset: 'horse2zebar' is not allowed", "horse2zebra"]),
    ("data.sha256", "abc", ["data.sha256: 'abc' does not match"]),
    ("prepare.load_size", 4, ["prepare.load_size: 4 is out of range", "[8, 4096]"]),
    ("data", [1, 2], ["data: expected a mapping with keys dataset, url"]),
])
def test_bad_values_name_the_key_and_the_allowed_values(key, value, expect):
    d = repo_params_dict()
    set_key(d, key, value)
    with pytest.raises(ConfigError) as e:
        parse_params(d)
    for fragment in expect:
        assert fragment in str(e.value)


def test_missing_key_is_an_error_not_a_hidden_default():
    d = repo_params_dict()
    del d["data"]["synthetic"]["seed"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) data.synthetic.seed"):
        parse_params(d)


@pytest.mark.parametrize("section, key, suggestion", [
    (None, "lamda_cycle", "lambda_cycle"), ("train", "n_epoch", "n_epochs"), ("evaluate", "kid_subset", "kid_subsets")])
def test_a_misspelt_key_gets_the_near_one_suggested(section, key, suggestion):
    d = repo_params_dict()
    (d[section] if section else d)[key] = 1
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) {key} \(did you mean {suggestion}\?\); allowed keys: "):
        parse_params(d)


def test_an_unknown_key_far_from_every_knob_gets_no_guess():
    d = repo_params_dict()
    d["colour"] = "red"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour; allowed keys: lambda_cycle,"):
        parse_params(d)


def test_a_misspelt_choice_gets_the_near_one_suggested():
    d = repo_params_dict()
    d["model"] = "cyclegn"
    with pytest.raises(ConfigError, match=r"model: 'cyclegn' is not allowed \(did you mean cyclegan\?\); allowed values"):
        parse_params(d)


def test_contradictory_settings_fail():
    d = repo_params_dict()
    d["prepare"]["min_size"] = d["data"]["synthetic"]["image_size"] + 1
    with pytest.raises(ConfigError, match="prepare.min_size.*larger than data.synthetic.image_size"):
        parse_params(d)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lambda_cycle: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_params(bad)


def test_stage_exits_with_one_clear_line_before_any_work(tmp_path):
    d = copy.deepcopy(repo_params_dict())
    d["prepare"]["load_sise"] = 64
    d["paths"] = {k: str(tmp_path / v) for k, v in d["paths"].items()}
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(d))
    r = subprocess.run([sys.executable, "-m", "pipeline.stages.download", "--params", str(f)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert "prepare: unknown key(s) load_sise (did you mean load_size?); allowed keys: load_size" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()  # nothing was written


COMMANDS = [f"pipeline.stages.{s}" for s in ("download", "prepare", "train", "translate", "ref_stats", "segmenter",
                                            "evaluate")] + \
           [f"pipeline.studies.{s}" for s in ("ablations", "report", "baselines", "benchmark", "sweep")]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_help_that_says_what_it_does(name, capsys):
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and f"python -m {name}" in out
    assert module.__doc__.strip().splitlines()[0] in out  # the module docstring: what it reads and writes


def test_choices_written_in_config_are_the_registries_they_select_from():
    """config.py cannot import these registries without making every stage depend on their code
    (tests/test_dvc_deps.py), so it repeats their names; this keeps the two equal."""
    import dataclasses

    from pipeline.config import EvaluateParams, TrainParams
    from pipeline.metrics.inception import PROTOCOL_SETS
    from pipeline.training import LR_POLICIES

    def choices(cls, name):
        return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"]

    assert set(choices(TrainParams, "lr_policy")) == set(LR_POLICIES)
    assert set(choices(EvaluateParams, "fid_protocols")) == set(PROTOCOL_SETS)


def test_loading_params_imports_no_torch_and_the_models_import_no_config():
    code = ("import sys, pipeline.config as c; c.load_params('params.yaml'); assert 'torch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    # the models' declarations stand alone: no import cycle between config and models
    code = "import sys, pipeline.models.registry; assert 'pipeline.config' not in sys.modules and 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_knob_has_a_one_line_doc():
    from pipeline.config import declared

    undocumented = [k.key for k in declared() if not k.meta["doc"].strip()]
    assert not undocumented, f"give these knobs a doc (knob(doc=...)): {undocumented}"


def test_the_execution_only_keys_are_those_the_training_fingerprint_has_always_left_out():
    """A checkpoint made under other values of these is resumed; changing the set changes every fingerprint."""
    from pipeline.config import execution_only_keys

    assert execution_only_keys() == {"translate", "mlflow", "paths", "train.checkpoint_every", "train.log_every",
                                     "train.num_workers", "train.num_threads", "train.device", "train.rdzv_endpoint",
                                     "train.dist_backend"}


def test_a_run_logs_its_own_model_and_data_and_the_columns_come_from_the_declarations():
    from pipeline.config import knob_columns, logged_params

    d = repo_params_dict()
    d["model"], d["train"]["batch_size"] = "bicyclegan", 2
    logged = logged_params(parse_params(d))
    assert "bicyclegan.nz" in logged and "data.synthetic.n_test" in logged and "evaluate.bootstrap" in logged
    assert not {k for k in logged if k.split(".")[0] in ("cyclegan", "pix2pix", "stargan", "mlflow", "paths")}
    assert not {"lambda_cycle", "lambda_identity", "pool_size"} & set(logged)  # CycleGAN's knobs
    assert not {k for k in logged if k.startswith("data.local.")}
    assert knob_columns("view") == ("model", "seed", "lambda_cycle", "lambda_identity", "pool_size",
                                    "cyclegan.adversarial", "cyclegan.cycle_forward", "cyclegan.cycle_backward")


def test_the_paper_weights_are_written_once_and_the_studies_pin_them():
    from pipeline.models.cyclegan import PAPER
    from pipeline.studies import ablations

    assert PAPER == {"lambda_cycle": 10.0, "lambda_identity": 0.5, "pool_size": 50}
    assert {k: ablations.ABLATIONS["full"][k] for k in PAPER} == {**PAPER, "lambda_identity": 0.0}  # Tables 4-5
    assert all(ablations.MULTI_DOMAIN[c][k] == v for c in ablations.MULTI_DOMAIN if c.startswith("cyclegan")
               for k, v in PAPER.items())


def test_params_yaml_says_at_most_one_comment_line_per_knob():
    """A knob's doc is its knob(doc=...); params.yaml's comment beside the value is one line."""
    lines = (REPO / "params.yaml").read_text().splitlines()

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    # a comment line indented past the key above it continues that key's comment (one at the key's own
    # indentation opens a group of knobs)
    continued = [f"{i + 1}: {line.strip()}" for i, line in enumerate(lines[1:], 1)
                 if line.lstrip().startswith("#") and not lines[i - 1].lstrip().startswith("#")
                 and ":" in lines[i - 1] and indent(line) > indent(lines[i - 1])]
    assert not continued, f"params.yaml continues a knob's comment on the next line: {continued}"
