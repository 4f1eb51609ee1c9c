"""Logged keys of sample-quality scores are built from the metric-spec table, from (name,
statistic) pairs: a metric whose name holds an underscore keeps it whole (``f_score`` ->
``val/f_score_lenet``, never ``val/f_lenet_score``)."""

from __future__ import annotations

import pytest

from dgm_lab.errors import ConfigError
from dgm_lab.metrics import specs
from dgm_lab.metrics.sample_quality import logged_scores


def test_a_metric_name_with_an_underscore_is_keyed_whole(monkeypatch):
    row = specs.MetricSpec("f_score", "max", "fraction", description="a throwaway row for this test")
    monkeypatch.setitem(specs.BY_NAME, "f_score", row)
    keys = logged_scores({("f_score", ""): 0.5, ("f_score", "std"): 0.1, ("is", "std"): 0.2}, "val", "lenet")
    assert keys == {"val/f_score_lenet": 0.5, "val/f_score_lenet_std": 0.1, "val/is_lenet_std": 0.2}
    parts = specs.parse("val/f_score_lenet_std")
    assert (parts.split, parts.name, parts.extractor, parts.statistic) == ("val", "f_score", "lenet", "std")
    assert logged_scores({("f_score", ""): 0.5}, "test", "") == {"test/f_score": 0.5}  # InceptionV3: no suffix


def test_cas_real_keeps_its_underscore_with_and_without_an_extractor():
    assert specs.metric_key("test", "cas_real") == "test/cas_real"
    assert logged_scores({("cas_real", ""): 0.9}, "test", "lenet") == {"test/cas_real_lenet": 0.9}
    parts = specs.parse("test/cas_real_lenet")
    assert (parts.name, parts.extractor, parts.statistic) == ("cas_real", "lenet", "")


def test_register_adds_a_row_once_and_refuses_to_redefine_one(monkeypatch):
    monkeypatch.setattr(specs, "BY_NAME", dict(specs.BY_NAME))  # rows registered here stay in this test
    row = specs.MetricSpec("coverage_test", "max", "fraction", 19, description="a throwaway row")
    assert specs.register(row) is row and specs.register(row) is row  # building a metric twice is fine
    assert specs.metric_key("val", "coverage_test", "lenet") == "val/coverage_test_lenet"
    assert specs.direction("val/coverage_test_lenet") == "max" and specs.headline({"test/coverage_test": 1.0})
    for clash, kind in ((specs.MetricSpec("fid", "max"), "built-in"), (specs.MetricSpec("coverage_test", "min"), "registered")):
        with pytest.raises(ConfigError, match=f"already a {kind} row") as error:
            specs.register(clash)
        assert "\n" not in str(error.value) and str(error.value).count(". ") == 0
    assert specs.register(specs.BY_NAME["fid"]) is specs.BY_NAME["fid"]  # the same values: no clash
    with pytest.raises(ConfigError, match="direction"):
        specs.register(specs.MetricSpec("up", "higher"))
