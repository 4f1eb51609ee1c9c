"""The CIFAR-10 ResNet feature extractor: its training script (on a tiny RGB folder the tests
write, producing the test-only weights every other test here uses), the choice of extractor by
dataset, the logged names, FID parity with numpy/scipy, and dgm-eval with it and with InceptionV3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from dgm_lab.config import CONF_DIR, register_resolvers
from dgm_lab.data import ImageFolderDataModule
from dgm_lab.errors import ConfigError, DataError, UserError
from dgm_lab.eval import evaluate
from dgm_lab.metrics import cifar_resnet, specs
from dgm_lab.metrics.classifier import accuracy
from dgm_lab.metrics.extractors import file_sha256, resolve_extractor
from dgm_lab.metrics.features import extract
from dgm_lab.metrics.sample_quality import SampleQuality
from dgm_lab.metrics.settings import INCEPTION, Settings
from dgm_lab.metrics.train_cifar_resnet import augment, schedule
from dgm_lab.metrics.train_cifar_resnet import main as train_main
from tests.conftest import REPO, run_cli

CLASSES = ("cat", "ship")
TINY = ["--epochs", "1", "--batch-size", "16", "--widths", "8,8,8,8", "--val-size", "8", "--precision", "fp32",
        "--threads", "1"]


def write_folder(root, per_class: int, seed: int):
    """<root>/{train,test}/<class>/NNN.png: 32x32 RGB, reddish cats and bluish ships."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", per_class // 2)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 120, (32, 32, 3))
                pixels[..., 0 if label == 0 else 2] += 130
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-class 32x32 RGB folder and CIFAR ResNet weights trained on it by the project's script."""
    base = tmp_path_factory.mktemp("cifar_resnet")
    write_folder(base / "images", per_class=40, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(base / "cache"))
        result = train_main(["--data-root", str(base / "images"), "--run-dir", str(base / "run"),
                             "--out-dir", str(base / "weights"), *TINY])
    return {"base": base, "root": base / "images", "weights": base / "weights" / cifar_resnet.WEIGHTS.name,
            "result": result}


def settings_with(tiny, **extra) -> Settings:
    return Settings.from_config({"cifar_resnet_weights": str(tiny["weights"]), **extra})


def test_training_script_records_the_weights_and_resumes(tiny, monkeypatch):
    result, weights = tiny["result"], tiny["weights"]
    record = json.loads((weights.parent / "ACCURACY.json").read_text())["cifar10_jpeg"]
    assert record == result and record["sha256"] == file_sha256(weights) and record["file_bytes"] == weights.stat().st_size
    assert (record["train_images"], record["val_images"], record["test_images"]) == (72, 8, 40)
    assert 0 <= record["test_accuracy"] <= 1 and len(record["test_accuracy_per_epoch"]) == 1
    saved = torch.load(weights, weights_only=True)
    assert saved["format"] == cifar_resnet.FORMAT and saved["widths"] == [8, 8, 8, 8]
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values() if v.is_floating_point())
    history = json.loads((tiny["base"] / "run" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1] and history[0]["test_accuracy"] == record["test_accuracy_per_epoch"][0]

    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny["base"] / "cache"))
    args = ["--data-root", str(tiny["root"]), "--run-dir", str(tiny["base"] / "run"), "--out-dir",
            str(tiny["base"] / "again")]
    with pytest.raises(UserError, match="already holds a run; add --resume"):  # a run is never overwritten
        train_main(args + TINY)
    script = subprocess.run([sys.executable, "-m", "dgm_lab.metrics.train_cifar_resnet", "--run-dir",
                             str(tiny["base"] / "empty"), "--resume"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert script.returncode == 2 and "Traceback" not in script.stderr
    assert script.stderr.strip().startswith("error: --resume found no") and script.stderr.count("\n") == 1
    again = train_main(args + ["--resume", "--epochs", "7"])  # the run's own settings win over the command line
    assert again["epochs"] == 1 and again["sha256"] == record["sha256"]  # the checkpoint, not a new net


def test_augmentation_translates_and_flips_and_the_schedule_warms_up_then_decays():
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 3, 32, 32)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    source = images.float() / 255
    for image, original in zip(out, source, strict=True):  # every output is a shift (or its mirror) of its input
        shifted = [torch.nn.functional.pad(original, (4, 4, 4, 4), mode="reflect")[:, r:r + 32, c:c + 32]
                   for r in range(9) for c in range(9)]
        assert any(torch.equal(image, s) or torch.equal(image, s.flip(-1)) for s in shifted)
    assert [schedule(s, 100, 0.25) for s in (0, 25, 50, 100)] == [0.0, 1.0, pytest.approx(2 / 3), 0.0]


def test_extractor_is_chosen_by_dataset_and_shape(tiny):
    settings = settings_with(tiny)
    for dataset in ("cifar10", "cifar10_jpeg"):
        assert resolve_extractor(settings, dataset).name == cifar_resnet.NAME
    chosen = resolve_extractor(settings, "image_folder", (3, 32, 32))  # a user's 32x32 RGB folder, any name
    assert chosen.name == cifar_resnet.NAME and chosen.key_name == "cifar_resnet" and chosen.channels == 3
    assert chosen.weights_sha256 == file_sha256(tiny["weights"])
    assert resolve_extractor(settings, "mnist").name == "lenet-mnist"
    assert resolve_extractor(settings, "fashion_mnist", (1, 28, 28)).name == "lenet-fashion-mnist"
    for dataset, shape in (("ring8", None), ("image_folder", (3, 64, 64)), ("my_faces", (1, 32, 32))):
        with pytest.raises(ConfigError) as error:
            resolve_extractor(settings, dataset, shape)
        message = str(error.value)
        assert f"{dataset!r}" in message and "\n" not in message and message.count(". ") == 0
        assert "metrics.feature_extractor=lenet-mnist|lenet-fashion-mnist|cifar-resnet" in message
        assert f"{INCEPTION} with metrics.inception_weights=" in message
    with pytest.raises(ConfigError, match="no LeNet registered for the dataset 'cifar10'"):
        resolve_extractor(Settings(feature_extractor="lenet"), "cifar10")
    assert resolve_extractor(settings_with(tiny, feature_extractor="cifar-resnet"), "ring8").name == cifar_resnet.NAME


def test_missing_or_foreign_weights_are_one_sentence(tmp_path):
    with pytest.raises(DataError, match="do not exist; reinstall dgm-lab or train them with"):
        resolve_extractor(Settings(cifar_resnet_weights=str(tmp_path / "nope.pt")), "cifar10")
    foreign = tmp_path / "lenet.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(DataError, match="is not a CIFAR ResNet weights file"):
        resolve_extractor(Settings(cifar_resnet_weights=str(foreign)), "cifar10")


def test_logged_names_cannot_be_taken_for_inception_scores():
    for name in ("fid", "is", "kid", "precision", "recall"):
        parts = specs.parse(f"val/{name}_cifar_resnet")
        assert (parts.name, parts.extractor, parts.statistic) == (name, "cifar_resnet", "")
        assert specs.metric_key("val", name, "cifar_resnet") != specs.metric_key("val", name)
    assert specs.parse("test/is_cifar_resnet_std").statistic == "std"
    assert specs.direction("val/fid_cifar_resnet") == "min" and specs.direction("val/is_cifar_resnet") == "max"


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID by its definition, with scipy's matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b - 2 * root))


def test_pipeline_fid_matches_numpy_on_the_extractors_features(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny["base"] / "cache"))
    data = ImageFolderDataModule(root=str(tiny["root"]), image_size=32, val_size=8)
    settings = Settings.from_config({"compute": {"fid": True, "is": True, "kid": True, "prc": True},
                                     "cifar_resnet_weights": str(tiny["weights"]), "num_real": 40,
                                     "kid_subset_size": 20, "kid_subsets": 10, "isc_splits": 2,
                                     "cache_dir": str(tmp_path / "fidelity")})
    extractor = resolve_extractor(settings, data.name, (3, 32, 32))
    quality = SampleQuality(settings, extractor, data)
    generated = data.reference_images("train", limit=60)[0]
    scores, record = quality.evaluate("test", images=generated)
    assert set(scores) == {f"test/{n}_cifar_resnet" for n in ("fid", "is", "kid", "precision", "recall")} | {
        "test/is_cifar_resnet_std", "test/kid_cifar_resnet_std"}
    assert record["feature_extractor"] == cifar_resnet.NAME and record["weights_sha256"] == file_sha256(tiny["weights"])

    net = cifar_resnet.load_cifar_resnet(tiny["weights"])  # features computed here without torch-fidelity
    real = data.reference_images("test")[0]
    features = [net(cifar_resnet.uint8_to_input(x))[0].double().numpy() for x in (generated, real)]
    assert scores["test/fid_cifar_resnet"] == pytest.approx(numpy_fid(*features), rel=1e-6, abs=1e-8)
    via_fidelity = extract(extractor.build("cpu"), real, 16, "cpu", 3)["features"].double().numpy()
    np.testing.assert_allclose(via_fidelity, features[1], rtol=1e-5, atol=1e-5)


def test_extractor_input_convention(tiny):
    net = cifar_resnet.FeatureExtractorCifarResNet(cifar_resnet.NAME, ["features", "logits"], str(tiny["weights"]))
    rgb = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    features, logits = net(rgb)
    assert features.shape == (3, 8) and logits.shape == (3, 10) and features.dtype == torch.float64
    with pytest.raises(ValueError, match="uint8"):
        net(rgb.float() / 255)
    grey = rgb[:, :1]
    assert torch.equal(net(grey)[0], net(grey.expand(-1, 3, -1, -1))[0])  # grey is replicated to RGB
    assert net(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))[0].shape == (2, 8)  # resized


def eval_args(tiny, tmp_path) -> tuple[list[str], dict]:
    images = np.stack([np.asarray(Image.open(p)) for p in sorted((tiny["root"] / "train" / "cat").glob("*.png"))])
    np.savez(tmp_path / "samples.npz", images=images[:10])
    env = {"XDG_CACHE_HOME": str(tiny["base"] / "cache"), "TORCH_HOME": str(tmp_path / "torch")}
    return [f"images={tmp_path / 'samples.npz'}", "data=image_folder", f"data.root={tiny['root']}", "data.val_size=8",
            f"metrics.cache_dir={tmp_path / 'fidelity'}", "metrics.batch_size=10"], env


def test_dgm_eval_picks_the_cifar_resnet_for_an_rgb_folder(tiny, tmp_path):
    common, env = eval_args(tiny, tmp_path)
    result = run_cli("dgm-eval", *common, "metrics=[fid,prc]", f"metrics.cifar_resnet_weights={tiny['weights']}",
                     "split=train", f"output={tmp_path / 'resnet.json'}", env=env)  # the papers' reference split
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "resnet.json").read_text())
    assert set(record["metrics"]) == {"train/fid_cifar_resnet", "train/precision_cifar_resnet",
                                      "train/recall_cifar_resnet"}
    protocol = record["sample_quality"]["protocol"]
    assert protocol["feature_extractor"] == cifar_resnet.NAME and protocol["reference"]["split"] == "train"
    assert protocol["num_real"] == 72  # every training image (80 less the 8 held out for validation)


def test_inception_weights_file_scores_rgb_images_as_inception_fid(tiny, inception_file, monkeypatch, tmp_path):
    """A file in the format of pt_inception-2015-12-05 (random values) goes through the whole
    pipeline; its scores are the unsuffixed Inception names and the protocol names the file."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny["base"] / "cache"))
    data = ImageFolderDataModule(root=str(tiny["root"]), image_size=32, val_size=8)
    settings = Settings.from_config({"compute": {"fid": True, "is": True}, "feature_extractor": INCEPTION,
                                     "inception_weights": str(inception_file), "download": False, "num_real": 8,
                                     "isc_splits": 2, "batch_size": 8, "cache_dir": str(tmp_path / "fidelity")})
    quality = SampleQuality(settings, resolve_extractor(settings, data.name, (3, 32, 32)), data)
    scores, record = quality.evaluate("test", images=data.reference_images("train", limit=8)[0])
    assert set(scores) == {"test/fid", "test/is", "test/is_std"} and np.isfinite(scores["test/fid"])
    assert record["feature_extractor"] == INCEPTION and record["weights_sha256"] == file_sha256(inception_file)
    assert record["num_generated"] == 8 and record["num_real"] == 8


@pytest.mark.slow
def test_dgm_eval_with_inception_weights_through_the_cli(tiny, inception_file, tmp_path):
    common, env = eval_args(tiny, tmp_path)
    result = run_cli("dgm-eval", *common, "metrics=[fid,is]", "metrics.feature_extractor=inception-v3-compat",
                     f"metrics.inception_weights={inception_file}", "metrics.isc_splits=2", "metrics.num_real=10",
                     f"output={tmp_path / 'inception.json'}", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "inception.json").read_text())
    assert set(record["metrics"]) == {"test/fid", "test/is", "test/is_std"}  # Inception scores carry no suffix
    protocol = record["sample_quality"]["protocol"]
    assert protocol["feature_extractor"] == INCEPTION and protocol["weights_sha256"] == file_sha256(inception_file)
    assert protocol["num_generated"] == 10 and protocol["num_real"] == 10


def test_dgm_eval_takes_the_train_split_for_sample_quality_alone(tmp_path):
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={tmp_path}", "split=train"])
    with pytest.raises(ConfigError, match=r"split must be val or test \(or train, for sample quality alone"):
        evaluate(cfg)  # a likelihood on the training images would be a training loss, not an evaluation


def test_shipped_cifar_resnet_is_small_recorded_and_accurate():
    path = cifar_resnet.WEIGHTS
    if not path.exists():
        pytest.skip(f"{path.name} is not shipped yet: python -m dgm_lab.metrics.train_cifar_resnet writes it")
    record = json.loads((path.parent / "ACCURACY.json").read_text())["cifar10_jpeg"]
    assert path.stat().st_size < 4_000_000
    assert record["test_accuracy"] >= 0.88 and record["sha256"] == file_sha256(path) and record["test_images"] == 10000
    assert record["date"] and "train_cifar_resnet" in record["command"]
    root = Path(os.environ.get("DGM_DATA_DIR", "")) / "CIFAR-10-images"
    if not os.environ.get("DGM_DATA_DIR") or not root.is_dir():
        pytest.skip("DGM_DATA_DIR has no CIFAR-10-images: the recorded accuracy is not re-measured")
    images, labels = ImageFolderDataModule(root=str(root), image_size=32, val_size=5000).reference_images("test", 2000)
    assert accuracy(cifar_resnet.load_cifar_resnet(path), images.float() / 255, labels) >= 0.87  # 2,000 images: a margin
