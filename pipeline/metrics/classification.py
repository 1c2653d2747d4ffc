"""Classification accuracy (StarGAN, Choi et al. 2018, Sec. 4.4): the share of translations into
domain Y that the domain classifier, trained on REAL images, assigns to Y; its accuracy on real test
images of every domain is the upper bound."""

from __future__ import annotations

from pipeline.artifacts import classifier as classifier_file
from pipeline.data.datasets import to_unit
from pipeline.domains import TWO_DOMAIN_ROUTES, test_dir
from pipeline.metrics.base import HIGHER, UNIT, Key, Metric, Resamplable, Result
from pipeline.metrics.context import Context
from pipeline.metrics.domain_classifier import classify
from pipeline.metrics.keys import MetricKey


def domain_accuracy(ctx: Context) -> list[Result]:
    state, net = classifier_file.load(ctx.params.paths.classifier)
    letters = list(state["domains"])
    protocol = {"classifier": f"{state['name']} trained on {state['trained_on']}",
                "classifier_resolution": f"{state['resolution']}px", "translation_resolution": f"{ctx.size}px"}
    out = []
    for r in ctx.directions():
        predicted = classify(net, to_unit(ctx.fake(r)), state["resolution"])
        correct = (predicted == letters.index(r.target)).double().numpy()
        out.append(Result(MetricKey("domain_acc", r), float(correct.mean()),
                          {**protocol, "n": len(correct), "target": f"{r.target} ({ctx.domain_name(test_dir(r.target))})"},
                          per_image=dict(zip(ctx.names(r), correct.tolist(), strict=True)),
                          resamplable=Resamplable.mean(correct)))
    upper = {**protocol, "method": "classify REAL test images (upper bound)", "n": state["upper_bound_n"],
             "per_domain": state["upper_bound_by_domain"]}
    return out + [Result(MetricKey("domain_acc_real"), state["upper_bound"], upper)]


DOMAIN_ACC = Metric(domain_accuracy, tuple(Key(MetricKey("domain_acc", r), HIGHER, headline=True, mean_summary=True,
                                               bounds=UNIT) for r in TWO_DOMAIN_ROUTES)
                    + (Key(MetricKey("domain_acc_real"), HIGHER, kind="upper_bound", bounds=UNIT),),
                    protocol="translations into domain Y classified as Y by a ResNet-18 trained on REAL images of "
                             "every domain (StarGAN Sec. 4.4); its accuracy on real test images is the upper bound")
