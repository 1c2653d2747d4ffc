"""Domains and routes (pipeline/domains.py) and the names of metric keys (pipeline/metrics/keys.py): every
string form parses to its structure and formats back to itself, and a bad string is refused in one line
that names it and the valid forms."""

import ast
import json
import subprocess
import sys

import pytest
import torch

from pipeline import domains
from pipeline.domains import AtoB, BtoA, Route
from pipeline.metrics import registry
from pipeline.metrics.keys import MEAN, MetricKey
from tests.helpers import REPO


@pytest.mark.parametrize("text, route", [("AtoB", Route("A", "B")), ("CtoA", Route("C", "A")),
                                         ("AtoBtoA", Route("A", "B", "A")), ("toC", Route(None, "C")),
                                         ("HtoG", Route("H", "G"))])
def test_a_route_parses_and_formats_back(text, route):
    assert Route.parse(text) == route and str(route) == route.format() == text


@pytest.mark.parametrize("bad", ["", "AB", "atob", "AtoI", "AtoBto", "toAtoB", "A to B", "AtoB_", "CtoDtoCtoD"])
def test_a_bad_route_says_what_it_got_and_the_valid_forms(bad):
    with pytest.raises(ValueError) as e:
        Route.parse(bad)
    message = str(e.value)
    assert "\n" not in message and repr(bad) in message and "AtoB" in message and "toC" in message


def test_a_route_knows_its_domains():
    assert AtoB.cycle() == Route.parse("AtoBtoA") and AtoB.cycle().end == "A" and AtoB.cycle().forward == AtoB
    assert BtoA.relabel(["C", "A"]) == Route("A", "C") and AtoB.cycle().relabel(["C", "A"]) == Route.parse("CtoAtoC")
    assert Route(None, "B").relabel(["C", "A"]) == Route(None, "A")
    assert [str(r) for r in domains.ordered_routes(domains.letters(3))] == ["AtoB", "AtoC", "BtoA", "BtoC", "CtoA", "CtoB"]


def test_folder_names():
    assert (domains.train_dir("A"), domains.test_dir("C")) == ("trainA", "testC")
    assert domains.labels_dir(domains.test_dir("B")) == "testB_labels" and domains.paired_train_dir("A") == "paired_trainA"
    assert [domains.letter_of(f) for f in ("testC", "trainB_labels", "paired_trainA")] == ["C", "B", "A"]
    assert domains.is_test_dir("testB") and not domains.is_test_dir("testB_labels")
    assert domains.is_train_dir("trainA") and not domains.is_train_dir("paired_trainA")


def test_the_one_hot_label_of_a_target_domain():
    assert torch.equal(domains.target_label(2, 2, 4), torch.tensor([[0.0, 0, 1, 0], [0, 0, 1, 0]]))
    assert torch.equal(domains.one_hot(torch.tensor([1, 0]), 2), torch.tensor([[0.0, 1], [1, 0]]))


def test_the_domains_module_is_a_leaf():
    """It imports nothing of the pipeline, and torch only inside a function."""
    tree = ast.parse((REPO / "pipeline" / "domains.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith(("pipeline", "torch"))], names
    code = "import sys, pipeline.domains; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- metric keys ------------------------------------------------------------------------------------

COMMITTED = json.loads((REPO / "reports" / "eval" / "metrics.json").read_text())
MULTI_DOMAIN = ["fid_CtoD", "fid_mean", "kid_DtoA_std", "kid_clean_mean", "fid_legacy_pytorch_CtoB", "fcn_real_C_class_iou",
                "fcn_mean_class_iou", "fcn_BtoC_pixel_acc", "cycle_l1_C", "domain_acc_real", "domain_acc_CtoA",
                "domain_acc_mean", "lpips_mean_input", "lpips_DtoC_truth", "l1_mean", "ssim_CtoB", "latent_chance_l1"]


@pytest.mark.parametrize("text", sorted(COMMITTED) + MULTI_DOMAIN)
def test_a_metric_key_parses_and_formats_back(text):
    key = MetricKey.parse(text)
    assert str(key) == key.format() == text and MetricKey.parse(str(key)) == key
    registry.key(key)  # and every one has a declaration


def test_every_declared_key_formats_and_parses_back():
    for key in registry.KEYS:
        assert MetricKey.parse(str(key)) == key


def test_a_metric_key_names_its_parts():
    assert MetricKey.parse("kid_clean_AtoB_std") == MetricKey("kid_clean", AtoB, "std")
    assert MetricKey.parse("fcn_real_C_class_iou") == MetricKey("fcn_real", "C", "class_iou")
    assert MetricKey.parse("fcn_real_class_iou") == MetricKey("fcn_real", None, "class_iou")
    assert MetricKey.parse("cycle_l1_A") == MetricKey("cycle_l1", "A")
    assert MetricKey.parse("fid_mean") == MetricKey("fid", MEAN) and MetricKey("fid", MEAN).is_mean
    assert MetricKey.parse("domain_acc_real") == MetricKey("domain_acc_real")
    assert MetricKey("fid", AtoB).at(MEAN) == MetricKey.parse("fid_mean")


@pytest.mark.parametrize("bad", ["", "AtoB", "fid__AtoB", "fid_AtoB_median", "_fid", "mean_fid"])
def test_a_bad_metric_key_says_what_it_got(bad):
    with pytest.raises(ValueError) as e:
        MetricKey.parse(bad)
    assert "\n" not in str(e.value) and repr(bad) in str(e.value)
