"""GANs under DDP (2 CPU processes, gloo) without ``find_unused_parameters``.

* Before every optimizer step, generator and discriminator gradients are identical on both ranks
  although the ranks saw different real data (so the agreement comes from DDP's all-reduce).
* A 2-process run with 16 examples per rank logs the same losses and ends with the same weights as a
  1-process run with 32 per example batch (data order fixed: ``data.shuffle=false``).

Conditional WGAN-GP exercises the double backward of the gradient penalty, n_critic = 5, label
embeddings and the projection discriminator.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import run_cli

SETTINGS = ["model=wgan_gp", "model.conditional=true", "model.generator.hidden=[32,32]",
            "model.discriminator.hidden=[32,32]", "data=ring8", "data.shuffle=false", "data.num_train=480",
            "data.num_val=64", "data.num_test=64", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
            "callbacks.mode_coverage.num_samples=200", "logger=none", "test=false",
            "callbacks.progress_bar.refresh_rate=0"]
ITERATIONS = 3  # 480 points / (32 per D step x 5 D steps)


class GradientAgreement(pl.Callback):
    """Test probe: gathers every optimizer's gradients from all ranks just before it steps and
    records the largest difference between ranks; rank 0 writes the record to ``path``."""

    def __init__(self, path: str):
        self.path = path
        self.record = {"max_difference": {}, "checks": {}, "grad_norm": {}, "batch_sums": [],
                       "noise_rng": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.record["batch_sums"].append(pl_module.all_gather(batch[0].sum()).tolist())
        noise = pl_module.noise_generator().get_state().double().sum()  # a fingerprint of the stream
        self.record["noise_rng"].append(pl_module.all_gather(noise).tolist())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        name = "generator" if optimizer is trainer.optimizers[0] else "discriminator"
        grads = torch.cat([p.grad.flatten() for group in optimizer.param_groups for p in group["params"]])
        gathered = pl_module.all_gather(grads)  # (world, n)
        difference = float((gathered - gathered[0]).abs().max())
        self.record["max_difference"][name] = max(difference, self.record["max_difference"].get(name, 0.0))
        self.record["checks"][name] = self.record["checks"].get(name, 0) + 1
        self.record["grad_norm"][name] = float(grads.norm())

    def on_train_end(self, trainer, pl_module):
        self.record["world_size"] = trainer.world_size
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(self.record))


def losses(run_dir: Path) -> list[tuple[float, float]]:
    with open(run_dir / "metrics.csv") as f:
        return [(float(r["train/d_loss"]), float(r["train/g_loss"])) for r in csv.DictReader(f) if r.get("train/d_loss")]


def train(run_dir: Path, *overrides: str):
    result = run_cli("dgm-train", *SETTINGS, *overrides, f"hydra.run.dir={run_dir}", env={"OMP_NUM_THREADS": "1"},
                     timeout=240, fresh_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    single = train(root / "single", "data.batch_size=32", "trainer.accelerator=cpu")
    probe = root / "gradients.json"
    double = train(root / "ddp", "trainer=ddp_cpu", "data.batch_size=16",
                   "+callbacks.gradient_agreement._target_=tests.test_gan_ddp.GradientAgreement",
                   f"+callbacks.gradient_agreement.path={probe}")
    return root, single, double, json.loads(probe.read_text())


def test_gradients_identical_across_ranks(runs):
    _, _, double, record = runs
    assert double["status"] == "completed" and record["world_size"] == 2
    assert double["config"]["trainer"]["strategy"] == "ddp"  # plain DDP: find_unused_parameters off
    assert record["checks"] == {"discriminator": 5 * ITERATIONS, "generator": ITERATIONS}
    for name in ("generator", "discriminator"):
        assert record["grad_norm"][name] > 0
        assert record["max_difference"][name] == 0.0, name
    # the ranks trained on different shards: agreement is DDP's doing, not a coincidence
    assert all(a != b for a, b in record["batch_sums"])
    assert all(a == b for a, b in record["noise_rng"])  # one noise stream, sliced per rank


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    root, single, double, _ = runs
    one, two = losses(root / "single"), losses(root / "ddp")
    assert len(one) == len(two) == ITERATIONS
    for (d1, g1), (d2, g2) in zip(one, two, strict=True):
        assert d1 == pytest.approx(d2, rel=1e-4, abs=1e-5) and g1 == pytest.approx(g2, rel=1e-4, abs=1e-5)
    a = torch.load(root / "single" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(root / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    assert single["metrics"]["val/generator_step"] == double["metrics"]["val/generator_step"] == ITERATIONS
