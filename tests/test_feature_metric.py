"""Feature metrics are plug-ins: built from ``metrics.implementations`` by ``_target_``, switched on
by ``metrics.compute``, with their layers in the reference cache key and the protocol, their rows
in the metric-spec table, and every mistake in one sentence (docs/extending.md has the worked
example, density and coverage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dgm_lab.config import CONF_DIR
from dgm_lab.data import MNIST5kDataModule
from dgm_lab.errors import ConfigError
from dgm_lab.metrics import specs
from dgm_lab.metrics.extractors import resolve_extractor
from dgm_lab.metrics.feature_metric import FeatureMetric, build_feature_metrics, reference_layers
from dgm_lab.metrics.sample_quality import SampleQuality
from dgm_lab.metrics.settings import BUILT_IN, Settings
from tests.conftest import run_cli

GAP = {"_target_": "tests.test_feature_metric.MeanGap", "scale": 2.0}


class MeanGap:
    """A throwaway plug-in on the logits layer: scale x |mean generated logits - mean real logits|."""

    names = ("mean_gap",)
    layer = "isc"
    needs_reference = True

    def __init__(self, scale: float = 1.0):
        specs.register(specs.MetricSpec("mean_gap", "min", "", description="a throwaway row for these tests"))
        self.scale = scale

    def compute(self, generated, reference, settings):
        gap = (generated.double().mean(0) - reference.features.double().mean(0)).norm().item()
        return {("mean_gap", ""): self.scale * gap}, {"mean_gap_scale": self.scale}


class NotAMetric:
    names = ("fid",)


@pytest.fixture(autouse=True)
def own_rows(monkeypatch):
    monkeypatch.setattr(specs, "BY_NAME", dict(specs.BY_NAME))  # rows registered here stay in each test


def settings_with(compute: dict, **implementations) -> Settings:
    return Settings.from_config({"compute": compute, "implementations": implementations, "num_samples": 200,
                                 "num_real": 200, "kid_subsets": 5})


def one_sentence(error) -> str:
    message = str(error.value)
    assert "\n" not in message and message.count(". ") == 0 and message.endswith("."), message
    return message


def test_the_built_ins_are_declared_in_common_yaml_and_fit_the_interface():
    common = OmegaConf.load(Path(CONF_DIR) / "metrics" / "common.yaml").metrics
    assert OmegaConf.to_container(common.implementations) == BUILT_IN  # one set of defaults, written twice
    assert set(common.compute) == {*BUILT_IN, "cas"}
    metrics = build_feature_metrics(Settings(compute=dict.fromkeys(BUILT_IN, True)))
    assert all(isinstance(m, FeatureMetric) for m in metrics.values())
    assert {name: (m.names, m.layer) for name, m in metrics.items()} == {
        "fid": (("fid",), "fid"), "is": (("is",), "isc"), "kid": (("kid",), "kid"),
        "prc": (("precision", "recall"), "prc")}


def test_unknown_names_and_bad_nodes_fail_in_one_sentence():
    with pytest.raises(ConfigError) as error:
        settings_with({"fld": True}, mean_gap=GAP)
    assert one_sentence(error).endswith("choose from metrics=[fid,is,kid,prc,mean_gap,cas].")
    with pytest.raises(ConfigError, match="must be a mapping with _target_") as error:
        settings_with({}, mean_gap={"scale": 2.0})
    one_sentence(error)
    with pytest.raises(ConfigError, match="cas is the classification accuracy score") as error:
        settings_with({}, cas=GAP)
    one_sentence(error)
    cases = [({"_target_": "no_such_package.Metric"}, "could not build no_such_package.Metric"),
             ({**GAP, "scael": 1.0}, "could not build tests.test_feature_metric.MeanGap"),
             ({"_target_": "tests.test_feature_metric.NotAMetric"}, "is not a feature metric")]
    for node, expected in cases:
        with pytest.raises(ConfigError, match=expected) as error:
            build_feature_metrics(settings_with({"bad": True}, bad=node))
        one_sentence(error)


def test_a_metric_must_report_known_rows_and_read_a_known_layer(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(MeanGap, "__init__", lambda self, scale=1.0: None)  # forgets to register its row
        with pytest.raises(ConfigError, match="call specs.register") as error:
            build_feature_metrics(settings_with({"mean_gap": True}, mean_gap=GAP))
        one_sentence(error)
    monkeypatch.setattr(MeanGap, "layer", "pool3")
    with pytest.raises(ConfigError, match="layer must be one of fid, isc, kid, prc") as error:
        build_feature_metrics(settings_with({"mean_gap": True}, mean_gap=GAP))
    one_sentence(error)


def test_a_plug_in_is_scored_keyed_cached_and_recorded_like_a_built_in(tmp_path):
    data = MNIST5kDataModule(binarize="none")
    data.setup()
    settings = settings_with({"fid": True, "mean_gap": True}, mean_gap=GAP)
    settings.cache_dir = str(tmp_path)
    quality = SampleQuality(settings, resolve_extractor(settings, data.name), data)
    images = data.reference_images("train", limit=200)[0]
    scores, record = quality.evaluate("val", images=images)
    assert set(scores) == {"val/fid_lenet", "val/mean_gap_lenet"} and scores["val/mean_gap_lenet"] > 0
    assert record["feature_layers"] == {"fid": "features", "mean_gap": "logits"}
    assert record["metrics"] == ["fid", "mean_gap"] and record["mean_gap_scale"] == 2.0
    assert "fid_raw" in record
    assert record["registered_specs"] == {"mean_gap": {"name": "mean_gap", "direction": "min", "unit": "", "headline": None,
                                                       "digits": 3, "description": "a throwaway row for these tests"}}
    fid_only = SampleQuality(Settings.from_config({"compute": {"fid": True}, "num_real": 200, "cache_dir": str(tmp_path)}),
                             quality.extractor, data)
    assert "registered_specs" not in fid_only.evaluate("val", images=images)[1]  # built-in rows need no record
    _, cache = quality.reference("val")
    # the logits are part of what is cached, beside the built-ins' layers (precision/recall: preactivations)
    assert cache["key"]["layers"] == ["features", "logits", "preactivations"]
    assert reference_layers(build_feature_metrics(Settings(compute={"fid": True})), quality.extractor) == [
        "features", "preactivations"]
    assert specs.direction("val/mean_gap_lenet") == "min" and specs.format_value("val/mean_gap_lenet", 1.23456) == "1.235"


def test_a_target_that_does_not_build_stops_dgm_train_before_training(tmp_path):
    result = run_cli("dgm-train", "data=digits", "logger=none", "+metrics.implementations.broken._target_=no_such.Metric",
                     "+metrics.compute.broken=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "metrics.implementations.broken could not build no_such.Metric" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
