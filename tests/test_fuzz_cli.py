"""Property: any mix of real and wrong ``key=value`` overrides (and options) given to dgm-train,
dgm-eval, dgm-sample and dgm-compare ends in success (exit 0) or a usage error (exit 2) that is
one sentence from dgm-lab (``<prog>: error: ...``) or Hydra's own message for a bad override;
never a traceback, never a hang (tests.inprocess fails a call past its time bound).

The default suite tries a few examples per program; ``-m slow`` many more."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FAST
from tests.inprocess import call

QUICK = [*FAST, "test=false", "trainer.max_steps=2", "trainer.limit_val_batches=1", "callbacks.image_samples.every_n_epochs=0"]
VALUES = st.one_of(
    st.integers(min_value=-3, max_value=4).map(str),
    st.sampled_from(["abc", "", "null", "true", "0.5", "-1e-3", "1e30", "nan", "inf", "[1,2]", "[a,b]", "[]", "{a:1}",
                     "vae", "gan", "digits", "x y", "${oc.env:DGM_NO_SUCH_VARIABLE}", "'quoted'", "stop", "skip",
                     "rollback", "test", "val"]),
)
TRAIN_KEYS = ["seed", "trainer.max_epochs", "trainer.max_steps", "data.batch_size", "data.train_subset", "model.latent_dim",
              "model.beta", "optimizer.lr", "optimizer.weight_decay", "eval.iwae_k", "trainer.nan_policy",
              "trainer.nan_patience", "trainer.gradient_clip_val", "no_such_key", "trainer.no_such_key",
              "+brand_new", "~seed", "monitor.mode", "test", "resume", "ckpt_path"]
TRAIN_GROUPS = {"model": ["vae", "iwae", "gan", "rbm", "no_such_model"], "data": ["digits", "ring8", "no_such_data"],
                "optimizer": ["adam", "sgd", "adamw", "no_such_optimizer"], "scheduler": ["cosine", "step", "nope"]}
SAMPLE_KEYS = ["num_samples", "batch_size", "grid_size", "seed", "label", "gibbs_steps", "no_such_key", "ckpt_path"]
EVAL_KEYS = ["split", "seed", "eval.iwae_k", "eval.iwae_batch", "likelihood", "metrics", "images", "no_such_key",
             "eval.ais.num_betas", "ckpt_path", "+model", "data"]


def override(keys: list[str]):
    return st.tuples(st.sampled_from(keys), VALUES).map(lambda kv: f"{kv[0]}" if kv[0].startswith("~") else f"{kv[0]}={kv[1]}")


def group_choice():
    return st.sampled_from(sorted(TRAIN_GROUPS)).flatmap(lambda g: st.sampled_from(TRAIN_GROUPS[g]).map(lambda c: f"{g}={c}"))


def check(prog: str, outcome) -> None:
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.code in (0, 2), (outcome.code, outcome.stderr[-3000:])
    if outcome.code == 2:
        ours = [line for line in outcome.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
        assert len(ours) <= 1, outcome.stderr[-3000:]  # one sentence, or Hydra's message when none is ours
        assert ours or outcome.stderr.strip(), "exit 2 with nothing said"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz") / "vae"
    outcome = call("dgm-train", *QUICK, f"hydra.run.dir={run}")
    assert outcome.code == 0, outcome.stderr[-3000:]
    return run


FEW = settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
MANY = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def fuzz_train(args: list[str]) -> None:
    run = Path(tempfile.mkdtemp(prefix="fuzz-train-"))
    check("dgm-train", call("dgm-train", *QUICK, *args, f"hydra.run.dir={run}/run"))


def fuzz_sample(trained, args: list[str]) -> None:
    out = Path(tempfile.mkdtemp(prefix="fuzz-sample-")) / "s.npz"
    check("dgm-sample", call("dgm-sample", f"ckpt_path={trained}", *args, f"output={out}"))


def fuzz_eval(trained, args: list[str]) -> None:
    out = Path(tempfile.mkdtemp(prefix="fuzz-eval-")) / "eval.json"
    check("dgm-eval", call("dgm-eval", f"ckpt_path={trained}", "eval.iwae_k=4", "progress_bar=false", *args,
                           f"output={out}"))


def fuzz_compare(trained, folders: list[str], options: list[str]) -> None:
    out = Path(tempfile.mkdtemp(prefix="fuzz-compare-")) / "report.html"
    real = {"RUN": str(trained), "MISSING": str(out.parent / "missing"), "FILE": str(trained / "summary.json"),
            "CHECKPOINTS": str(trained / "checkpoints")}
    check("dgm-compare", call("dgm-compare", *[real.get(f, f) for f in folders], *options, "--out", str(out)))


TRAIN_ARGS = st.lists(st.one_of(override(TRAIN_KEYS), group_choice()), min_size=1, max_size=3)
SAMPLE_ARGS = st.lists(override(SAMPLE_KEYS), min_size=1, max_size=3)
EVAL_ARGS = st.lists(override(EVAL_KEYS), min_size=1, max_size=3)
COMPARE_FOLDERS = st.lists(st.sampled_from(["RUN", "MISSING", "FILE", "CHECKPOINTS", "", "*", "--"]), min_size=0, max_size=3)
COMPARE_OPTIONS = st.lists(st.one_of(st.tuples(st.just("--metrics"), VALUES).map(list), st.just(["--bogus"]),
                                     st.just(["--help"])), max_size=2).map(lambda parts: [p for part in parts for p in part])


@FEW
@given(args=TRAIN_ARGS)
def test_train_overrides_end_in_success_or_one_sentence(args):
    fuzz_train(args)


@FEW
@given(args=SAMPLE_ARGS)
def test_sample_overrides_end_in_success_or_one_sentence(trained, args):
    fuzz_sample(trained, args)


@FEW
@given(args=EVAL_ARGS)
def test_eval_overrides_end_in_success_or_one_sentence(trained, args):
    fuzz_eval(trained, args)


@FEW
@given(folders=COMPARE_FOLDERS, options=COMPARE_OPTIONS)
def test_compare_arguments_end_in_success_or_one_sentence(trained, folders, options):
    fuzz_compare(trained, folders, options)


@pytest.mark.slow
@MANY
@given(args=TRAIN_ARGS)
def test_train_overrides_many(args):
    fuzz_train(args)


@pytest.mark.slow
@MANY
@given(args=SAMPLE_ARGS)
def test_sample_overrides_many(trained, args):
    fuzz_sample(trained, args)


@pytest.mark.slow
@MANY
@given(args=EVAL_ARGS)
def test_eval_overrides_many(trained, args):
    fuzz_eval(trained, args)


@pytest.mark.slow
@MANY
@given(folders=COMPARE_FOLDERS, options=COMPARE_OPTIONS)
def test_compare_arguments_many(trained, folders, options):
    fuzz_compare(trained, folders, options)
