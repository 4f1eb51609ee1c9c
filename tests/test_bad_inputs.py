"""Every bad input of issue 15's list ends in one sentence on stderr (``<prog>: error: ...``) and
exit code 2: no traceback, no hang, nothing written before it lost. Called in-process through the
console scripts' ``main`` (tests.inprocess) so that the matrix costs seconds."""

from __future__ import annotations

import errno
import os
import shutil
import struct

import numpy as np
import pytest
import torch

from dgm_lab import checkpoint_io
from tests.conftest import FAST
from tests.inprocess import call

TRAIN = [*FAST, "test=false"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained VAE run, and the bad files the cases pass."""
    root = tmp_path_factory.mktemp("bad_inputs")
    run = root / "vae"
    outcome = call("dgm-train", *TRAIN, f"hydra.run.dir={run}")
    assert outcome.code == 0, outcome.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    (root / "truncated.ckpt").write_bytes(last.read_bytes()[:50_000])
    (root / "text.ckpt").write_text("not a checkpoint\n")
    (root / "not_a_zip.npz").write_text("not a zip archive")
    np.savez(root / "small.npz", images=np.zeros((10, 5, 5), dtype=np.uint8))
    binary = root / "binary_run"
    shutil.copytree(run, binary)
    (binary / "metrics.csv").write_bytes(b"\x00\xff\xfe" + os.urandom(2000))
    (root / "a_file").write_text("a file, not a folder")
    write_mnist(root / "magic", images_magic=0x00000899, labels=10)
    write_mnist(root / "labels", images_magic=0x00000803, labels=9)
    return {"root": root, "run": run, "last": last}


def write_mnist(data_dir, images_magic: int, labels: int) -> None:
    """MNIST raw files with 10 train/test images and ``labels`` labels, the images' magic number given."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", images_magic, 10, 28, 28) + bytes(7840))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 0x00000801, labels) + bytes(labels))


# (case, program, arguments with {root}/{run}/{last} filled in, the sentence's telling part)
CASES = [
    ("seed not a number", "dgm-train", ["seed=abc"], "seed must be an integer from 0 to 4294967295, got seed='abc'."),
    ("num_samples not a number", "dgm-sample", ["ckpt_path={run}", "num_samples=abc"],
     "num_samples must be a positive integer, got num_samples='abc'."),
    ("grid_size=0", "dgm-sample", ["ckpt_path={run}", "grid_size=0"], "grid_size must be a positive integer, got grid_size=0."),
    ("batch_size=0 (hung before)", "dgm-sample", ["ckpt_path={run}", "batch_size=0"],
     "batch_size must be a positive integer, got batch_size=0."),
    ("num_samples=-5", "dgm-sample", ["ckpt_path={run}", "num_samples=-5"], "num_samples must be a positive integer"),
    ("gibbs_steps=0", "dgm-sample", ["ckpt_path={run}", "gibbs_steps=0"], "gibbs_steps must be a positive integer"),
    ("ckpt_path of another latent_dim", "dgm-train", ["model.latent_dim=7", "ckpt_path={last}"],
     "holds weights of dgm_lab.models.vae.VAE that do not fit this run's model (shapes differ:"),
    ("ckpt_path of another model", "dgm-train", ["model=gan", "data.binarize=none", "ckpt_path={last}"],
     "holds weights of dgm_lab.models.vae.VAE that do not fit this run's model"),
    # (a read-only folder is the same check, os.access; as root every folder is writable)
    ("unwritable output folder", "dgm-train", ["hydra.run.dir={root}/a_file/run"],
     "cannot create the output folder {root}/a_file/run: {root}/a_file is a file; choose another hydra.run.dir."),
    ("binary metrics.csv", "dgm-compare", ["{root}/binary_run", "--out", "{root}/report.html"],
     "metrics.csv is not a CSV text file"),
    ("images= not a zip", "dgm-eval", ["images={root}/not_a_zip.npz", "data=digits", "metrics=lenet"],
     "not_a_zip.npz is not a readable .npz archive"),
    ("dbn layers not numbers", "dgm-train", ["model=dbn", "model.layers=[a,b]"], "model.layers"),
    ("IDX wrong magic", "dgm-train", ["data=mnist", "paths.data_dir={root}/magic"], "has a wrong IDX magic number (0x00000899"),
    ("label count mismatch", "dgm-train", ["data=mnist", "paths.data_dir={root}/labels"],
     "holds 10 images but {root}/labels/MNIST/raw/train-labels-idx1-ubyte holds 9 labels"),
    ("dgm-eval ckpt_path with model= and data=", "dgm-eval", ["ckpt_path={run}", "+model=vae", "data=mnist_5k"],
     "model= and data= would be ignored"),
    ("images of another shape", "dgm-eval", ["images={root}/small.npz", "data=mnist_5k", "metrics=lenet"],
     "are (1, 5, 5) (C, H, W) but data=mnist_5k images are (1, 28, 28)"),
    ("truncated checkpoint to dgm-eval", "dgm-eval", ["ckpt_path={root}/truncated.ckpt"], "it is corrupt or truncated"),
    ("truncated checkpoint to dgm-sample", "dgm-sample", ["ckpt_path={root}/truncated.ckpt"], "it is corrupt or truncated"),
    ("truncated checkpoint to ckpt_path=", "dgm-train", ["ckpt_path={root}/truncated.ckpt"], "it is corrupt or truncated"),
    ("text file as checkpoint", "dgm-sample", ["ckpt_path={root}/text.ckpt"], "could not be read with weights_only=True"),
    ("batch size 0", "dgm-train", ["data.batch_size=0"], "batch_size"),
    ("epochs 0", "dgm-train", ["trainer.max_epochs=0"], "trainer.max_epochs must be >= 1"),
    ("importance samples 0", "dgm-train", ["model=iwae", "model.k=0"], "model.k"),
    ("eval.iwae_k=0", "dgm-eval", ["ckpt_path={run}", "eval.iwae_k=0"], "eval.iwae_k must be a positive integer"),
    ("AIS temperatures 1", "dgm-eval", ["ckpt_path={run}", "eval.ais.num_betas=1"], "eval.ais.num_betas must be at least 3"),
    ("learning rate 0", "dgm-train", ["optimizer.lr=0"], "optimizer.lr must be positive"),
    # found by the slow fuzz test: Hydra reads these as numbers and resolved them into the run folder
    ("resume= a number", "dgm-train", ["resume=-1"], "resume must be a path (a file or folder name), got resume=-1"),
    ("ckpt_path= a number", "dgm-sample", ["ckpt_path=0.5"], "ckpt_path must be a path (a file or folder name)"),
    ("ckpt_path= a number to dgm-eval", "dgm-eval", ["ckpt_path=1e3"], "ckpt_path must be a path"),
    ("unset environment variable", "dgm-eval", ["ckpt_path={run}", "eval.iwae_k=${{oc.env:DGM_NO_SUCH_VARIABLE}}"],
     "setting eval.iwae_k could not be resolved"),
    ("data=npz without data.path (a traceback before)", "dgm-train", ["data=npz"],
     "setting data.path needs a value: give data.path=... on the command line."),
    ("data=image_folder without data.root", "dgm-train", ["data=image_folder"],
     "setting data.root needs a value: give data.root=... on the command line."),
    ("experiment=m1m2_mnist100 without an M1 run (plain M2 before)", "dgm-train", ["experiment=m1m2_mnist100", "data=digits"],
     "model.m1_ckpt needs a value: give model.m1_ckpt=<the run folder of a trained M1"),
]


@pytest.mark.parametrize(("case", "prog", "args", "sentence"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_sentence(files, tmp_path, case, prog, args, sentence):
    filled = [a.format(root=files["root"], run=files["run"], last=files["last"]) for a in args]
    if prog == "dgm-train":
        filled = [*TRAIN, *filled] if any(a.startswith("hydra.run.dir") for a in filled) else \
            [*TRAIN, *filled, f"hydra.run.dir={tmp_path / 'run'}"]
    outcome = call(prog, *filled)
    print(f"{case}: {outcome.last_line}")
    assert outcome.code == 2, outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.last_line.startswith(f"{prog}: error: "), outcome.stderr[-3000:]
    assert sentence.format(root=files["root"]) in outcome.last_line, outcome.stderr[-3000:]


def test_full_disk_while_writing_a_checkpoint_keeps_the_last_good_one(files, tmp_path, monkeypatch):
    """ENOSPC injected into the second checkpoint write (epoch 2's best, after epoch 1's two)."""
    writes, original = [], checkpoint_io.AtomicCheckpointIO.write

    def write(self, checkpoint, temporary):
        writes.append(temporary)
        if len(writes) == 3:
            temporary.write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))
        original(self, checkpoint, temporary)

    monkeypatch.setattr(checkpoint_io.AtomicCheckpointIO, "write", write)
    run = tmp_path / "run"
    outcome = call("dgm-train", *[a for a in TRAIN if not a.startswith("trainer.max_epochs")], "trainer.max_epochs=3",
                   f"hydra.run.dir={run}")
    assert outcome.code == 2 and "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.last_line.startswith("dgm-train: error: the disk is full: checkpoint "), outcome.last_line
    assert f"resume={run}" in outcome.last_line
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # epoch 1's, whole
    assert last["epoch"] == 0 and "state_dict" in last
    assert not list((run / "checkpoints").glob(".*.tmp*"))
    assert (run / "summary.json").read_text().strip().endswith("}")
