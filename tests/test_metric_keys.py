"""Logged keys of sample-quality scores are built from the metric-spec table, from (name,
statistic) pairs: a metric whose name holds an underscore keeps it whole (``f_score`` ->
``val/f_score_lenet``, never ``val/f_lenet_score``)."""

from __future__ import annotations

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
