"""Everyday use through the console scripts (issue 17): progress and prompt stops in evaluation,
cheap default estimates with the paper protocol in the experiments, a quality signal for GANs,
the real cause of build errors, TensorBoard, EMA warm-up and the raw generator, dgm-sample file
names, resume with eval.* overrides, precision/recall that reject noise, honest comparisons and
quiet output."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dgm_lab.data import MNIST5kDataModule
from dgm_lab.data.base import to_uint8
from tests.conftest import FAST, REPO, run_cli, train_run


def needs_tensorboard(**kwargs):
    """A logger target that fails as Lightning's TensorBoardLogger does without tensorboard installed."""
    raise ModuleNotFoundError("Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing either.\n"
                              "DistributionNotFound: The 'tensorboard' distribution was not found")


# -- evaluation: progress, prompt stop, cheap defaults, the protocol beside the number -------------

def test_dgm_eval_shows_ais_progress_and_stops_on_sigterm_with_one_sentence(tmp_path):
    run = tmp_path / "rbm"
    train_run(run, "model=rbm", "test=false")
    log = tmp_path / "eval.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "dgm_lab.eval", f"ckpt_path={run}",
                                    "eval.ais.num_betas=2000000"], cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=stderr, text=True)
        deadline = time.time() + 240
        while "AIS (20 runs)" not in log.read_text() and process.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert "AIS (20 runs)" in log.read_text(), log.read_text()[-2000:]
        time.sleep(1.0)  # inside the temperature loop
        process.send_signal(signal.SIGTERM)
        sent = time.time()
        code = process.wait(timeout=30)
        stopped_in = time.time() - sent
    text = log.read_text()
    assert "/2000000" in text  # the bar counts temperatures against their total
    assert code == 128 + signal.SIGTERM and stopped_in < 5, (code, stopped_in)
    assert "dgm-eval: error: stopped by SIGTERM while evaluating" in text and "Traceback" not in text
    assert not (run / "eval.json").exists()  # nothing half-written


def test_default_estimates_are_cheap_and_experiments_use_the_paper_protocol(compose_train):
    default = compose_train([]).eval
    assert default.iwae_k == 200 and default.ais.num_betas == 1000 and default.ais.num_runs == 20
    for experiment in ("vae_mnist", "rbm_cd_mnist", "rbm_pcd_mnist", "rbm_dbn_mnist", "rbm_dbm_mnist"):
        paper = compose_train([f"experiment={experiment}"]).eval
        assert paper.iwae_k == 5000 and paper.ais.num_betas == 14500 and paper.ais.num_runs == 100, experiment
    assert compose_train(["evaluation=paper"]).eval.iwae_k == 5000


# -- a quality signal for GANs; grids, checkpoints, TensorBoard, dgm-sample names -------------------

@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A class-conditional GAN on 8x8 digits, 30 generator iterations, with TensorBoard."""
    run = tmp_path_factory.mktemp("gan") / "run"
    result = run_cli("dgm-train", *[o for o in FAST if not o.startswith("logger")], "model=gan", "model.conditional=true",
                     "model.max_generator_steps=30",
                     "logger=tensorboard", "metrics.cache_dir=" + str(run.parent / "cache"), f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result


def test_gan_checkpoints_and_headline_follow_lenet_fid_not_a_counter(gan_run):
    run, result = gan_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["monitor"] == "val/fid_lenet" and summary["best"]["mode"] == "min"
    assert summary["best"]["score"] == pytest.approx(summary["metrics"]["val/fid_lenet"])
    headline = result.stdout.rpartition("[dgm-lab] completed")[2].splitlines()[0]
    assert headline.startswith(" in ") and "test/fid_lenet=" in headline and "val/fid_lenet=" in headline
    protocol = summary["diagnostics"]["sample_quality"]["val"]["protocol"]
    assert protocol["num_generated"] == 2000  # monitor.auto_num_samples
    # checkpoints and grids count epochs alike, from 1; 8x8 digits are scaled up, with a caption
    assert (run / "checkpoints" / "best-epoch001.ckpt").exists() and (run / "samples" / "samples_epoch0001.png").exists()
    width, height = Image.open(run / "samples" / "samples_epoch0001.png").size
    assert width >= 6 * 28 and height >= 10 * 28 + 10  # one row per class: 10 rows of 64 // 10 = 6
    # TensorBoard works after a plain install, and train.log is not empty
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    log = (run / "train.log").read_text()
    assert "best checkpoint by val/fid_lenet (min)" in log and "[dgm-lab] completed" in log


@pytest.mark.parametrize(("every_n_epochs", "monitor", "checkpoint_every"), [
    ("1", "val/fid_lenet", None), ("5", "val/fid_lenet", 5), ("null", None, None)])
def test_gan_monitor_is_a_metric_scored_at_those_validations(compose_train, every_n_epochs, monitor,
                                                                checkpoint_every):
    """A selected metric scored at validation picks the checkpoint only where it exists (Lightning
    stops a run whose monitored key is missing); one kept for the test alone (every_n_epochs=null,
    the dcgan_fid_mnist row) leaves the newest checkpoint and the user's protocol untouched."""
    from dgm_lab import builders
    from dgm_lab.monitor import fill_monitor

    cfg = compose_train(["model=dcgan", "data=digits", "metrics=lenet", f"metrics.every_n_epochs={every_n_epochs}",
                         "metrics.num_samples=10000"])
    fill_monitor(cfg, builders.build_datamodule(cfg))
    assert cfg.monitor.metric == monitor and cfg.metrics.num_samples == 10000
    assert cfg.callbacks.model_checkpoint.get("every_n_epochs") == checkpoint_every


def test_gan_without_any_quality_signal_keeps_the_newest_checkpoint_and_says_so(tmp_path):
    summary = train_run(tmp_path / "run", "model=gan", "model.max_generator_steps=5", "monitor.auto_quality=false")
    assert summary["config"]["monitor"]["metric"] is None and summary["best"] == {}


def test_dgm_sample_names_say_what_was_drawn_and_never_overwrite(gan_run):
    run, _ = gan_run
    samples = run / "samples"

    def sample(*args):
        result = run_cli("dgm-sample", f"ckpt_path={run}", "num_samples=16", *args)
        assert result.returncode == 0, result.stderr[-2000:]
        return Path(result.stdout.split(" -> ")[1].split(" ")[0]).name

    assert sample("label=3") == "sample-n16-seed0-label3.npz"
    assert sample() == "sample-n16-seed0.npz"
    assert sample() == "sample-n16-seed0-2.npz"  # the same draw again: a new name
    assert sample("generator=raw") == "sample-n16-seed0-raw.npz"
    labels = np.load(samples / "sample-n16-seed0-label3.npz")["labels"]
    assert (labels == 3).all()
    raw, ema = (np.load(samples / name)["images"] for name in ("sample-n16-seed0-raw.npz", "sample-n16-seed0.npz"))
    assert not np.array_equal(raw, ema)  # the raw generator, not the EMA one
    taken = run_cli("dgm-sample", f"ckpt_path={run}", f"output={samples / 'sample-n16-seed0.npz'}")
    assert taken.returncode == 2 and "already exists" in taken.stderr


def test_dgm_sample_help_lists_only_sampling_settings():
    result = run_cli("dgm-sample", "--help")
    assert result.returncode == 0
    assert "num_samples" in result.stdout and "generator" in result.stdout
    for training_only in ("Configuration groups", "optimizer:", "trainer:", "hparams_search"):
        assert training_only not in result.stdout, training_only


# -- errors keep their cause -----------------------------------------------------------------------

def test_build_errors_keep_the_real_cause_in_one_sentence():
    bad = run_cli("dgm-train", *FAST, "data.train_subset=abc")
    assert bad.returncode == 2 and "data.train_subset must be a positive integer or null, got 'abc'" in bad.stderr
    missing = run_cli("dgm-train", *[o for o in FAST if not o.startswith("logger")], "logger=tensorboard",
                      "logger.tensorboard._target_=tests.test_everyday.needs_tensorboard")
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "tensorboard is not installed: pip install tensorboard" in missing.stderr and "Traceback" not in missing.stderr


# -- resume with eval.* overrides; quiet runs; timing without validation -----------------------------

def test_resume_applies_eval_overrides_records_them_and_runs_quietly(tmp_path):
    run = tmp_path / "vae"
    first = run_cli("dgm-train", *[o for o in FAST if not o.startswith("logger")], "logger=wandb", "test=false",
                    f"hydra.run.dir={run}", env={"WANDB_MODE": "offline"}, fresh_process=True)
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    assert "anonymous" not in output and "litlogger" not in output
    resumed = run_cli("dgm-train", f"resume={run}", "trainer.max_epochs=2", "eval.iwae_k=50", "test=true",
                      env={"WANDB_MODE": "offline"}, fresh_process=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["diagnostics"]["test/iwae"]["iwae_k"] == 50  # the protocol beside test/nll_iwae
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["eval"]["iwae_k"] == saved["model"]["evaluation"]["iwae_k"] == 50
    assert saved["trainer"]["max_epochs"] == 2
    assert saved["resumed"][-1]["overrides"] == ["trainer.max_epochs=2", "eval.iwae_k=50", "test=true"]
    timing = summary["timing"]
    assert 0 < timing["validation_s"] < timing["fit_s"]
    assert timing["ms_per_iteration"] == pytest.approx(
        1000 * (timing["fit_s"] - timing["validation_s"]) / timing["iterations"], rel=0.05)


# -- precision/recall of the LeNet reject noise and foreign images ----------------------------------

def _patterns(n: int, rng: np.random.Generator) -> np.ndarray:
    """Out-of-domain 28x28 images: stripes, checkerboards and filled rectangles."""
    out = np.zeros((n, 28, 28), dtype=np.uint8)
    y, x = np.mgrid[:28, :28]
    for i in range(n):
        period = rng.integers(2, 8)
        kind = i % 3
        if kind == 0:
            out[i] = ((x // period) % 2) * 255
        elif kind == 1:
            out[i] = (((x // period) + (y // period)) % 2) * 255
        else:
            top, left = rng.integers(0, 14, size=2)
            out[i, top:top + rng.integers(6, 14), left:left + rng.integers(6, 14)] = 255
    return out


def test_lenet_precision_is_low_for_noise_and_foreign_images(tmp_path):
    datamodule = MNIST5kDataModule(binarize="none")  # 28x28, as the noise (dgm-eval refuses another shape)
    datamodule.setup()
    rng = np.random.default_rng(0)
    sets = {
        "real": to_uint8(datamodule.splits["train"].images[:600]).permute(0, 2, 3, 1).numpy(),
        "noise": rng.integers(0, 256, size=(600, 28, 28), dtype=np.uint8),
        "patterns": _patterns(600, rng),
    }
    folder = tmp_path / "inputs"
    folder.mkdir()
    scores = {}
    for name, images in sets.items():
        np.savez(folder / f"{name}.npz", images=images)
        result = run_cli("dgm-eval", f"images={folder / f'{name}.npz'}", "data=mnist_5k", "metrics=[prc]",
                         "split=val", f"paths.log_dir={tmp_path / 'outputs'}", f"metrics.cache_dir={tmp_path / 'cache'}")
        assert result.returncode == 0, result.stderr[-2000:]
        written = Path(result.stdout.rpartition("wrote ")[2].strip())
        assert written.parent.parent == tmp_path / "outputs" / "eval"  # never beside the inputs
        scores[name] = json.loads(written.read_text())["metrics"]
    assert not list(folder.glob("eval.json"))
    assert scores["real"]["val/precision_lenet"] > 0.6 and scores["real"]["val/recall_lenet"] > 0.6, scores
    assert scores["noise"]["val/precision_lenet"] < 0.1 and scores["noise"]["val/recall_lenet"] < 0.1, scores
    # Known weakness (issue 17, open): rectangles and checkerboards against MNIST still get precision
    # about 0.43 in LeNet features (0.01-0.13 against 8x8 digits); only their recall is near 0.
    assert scores["patterns"]["val/precision_lenet"] < 0.6 * scores["real"]["val/precision_lenet"], scores
    assert scores["patterns"]["val/recall_lenet"] < 0.1, scores
