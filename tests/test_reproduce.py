"""dgm-reproduce: every registry row composes and runs --quick, the table from fixture results
(stale detection included), --resume continues a stopped row, and bad input is one sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dgm_lab.reproduce.config_hash import config_hash, row_hash
from dgm_lab.reproduce.registry import load_registry
from dgm_lab.reproduce.runner import _commits
from dgm_lab.reproduce.status import read_result
from dgm_lab.reproduce.table import BEGIN, END
from dgm_lab.reproduce.table import _commits as table_commits
from tests.inprocess import run_main

REPO = Path(__file__).resolve().parent.parent
ROWS = load_registry()
RUNNABLE = [name for name, row in ROWS.items() if row.experiment_file.exists()]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "WANDB_MODE": "disabled"}


def reproduce(*args: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """``dgm-reproduce args...`` run in this process (the dgm-train runs it starts are processes of their own)."""
    return run_main("dgm-reproduce", *args, env=env or ENV, cwd=REPO, timeout=timeout)


def test_registry_rows_are_complete_and_set_their_evaluation_protocol():
    assert {"vae_k1", "iwae_k5", "iwae_k50", "rbm_cd1", "rbm_pcd", "rbm_cd25", "dbn_500_2000", "dbm_500_1000",
            "wgan_gp_ring8", "wgan_gp_grid25", "dcgan_fid_mnist", "dcgan_fid_fashion", "m2_mnist100",
            "ssgan_mnist100"} <= set(ROWS)
    assert ROWS["vae_k1"].target.published == 86.76 and ROWS["iwae_k50"].target.published == 84.78
    for row in ROWS.values():
        if "nll_iwae" in row.target.metric:
            assert "eval.iwae_k=5000" in row.protocol, row.name
        if "ais" in row.target.metric:
            assert {"eval.ais.num_betas=14500", "eval.ais.num_runs=100"} <= set(row.protocol), row.name
        assert row.quick, row.name
        assert row.waits_on is not None or row.experiment_file.exists(), row.name


# One quick run per model family in the default suite (each costs a dgm-train start and a short
# schedule); every other row runs --quick with the slow tests, and every row composes here.
QUICK_IN_DEFAULT_SUITE = {"vae_k1", "rbm_cd1", "dbn_500_2000", "wgan_gp_ring8"}  # m1m2: test_a_row_after_another...


@pytest.mark.parametrize("name", RUNNABLE)
def test_every_runnable_row_composes(name):
    row = ROWS[name]
    assert len(config_hash(row.train_overrides())) >= 8  # the resolved config of the row composes


@pytest.mark.parametrize("name", [name if name in QUICK_IN_DEFAULT_SUITE else pytest.param(name, marks=pytest.mark.slow)
                                  for name in RUNNABLE])
def test_every_runnable_row_composes_and_runs_quick(name, tmp_path):
    result = reproduce(name, "--quick", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
                       env={**ENV, "DGM_DATA_DIR": str(tmp_path / "no-data")})
    assert result.returncode == 0, result.stderr[-3000:]
    stored = json.loads((tmp_path / "results" / "quick" / f"{name}.json").read_text())
    row = ROWS[name]
    assert stored["quick"] is True and stored["config_hash"] == row_hash(row, ROWS)
    if "data" in row.needs:  # the Inception scores need weights that are not here: quick leaves them out
        assert stored["value"] is None and row.target.metric in stored["missing_metrics"]
    else:
        assert stored["value"] == stored["metrics_mean"][row.target.metric] and not stored["missing_metrics"]
    assert stored["commands"][0].startswith(f"dgm-train experiment={row.experiment}")
    assert set(row.protocol) <= set(stored["commands"][0].replace("'", "").split())
    assert stored["hardware"]["cpu_cores"] >= 1 and stored["wall_time_s"] > 0
    assert stored["git_commit"] and stored["package_version"]


def test_a_result_names_the_commit_its_run_started_from(tmp_path, monkeypatch):
    """A long row outlives edits to the tree: the commit is read when dgm-train starts, not when
    the result is written (here the 'tree' has moved on once the run has finished)."""
    finished = tmp_path / "runs" / "vae_k1-quick" / "summary.json"
    monkeypatch.setattr("dgm_lab.reproduce.provenance.git_commit",
                        lambda repo: "commit-at-end" if finished.exists() else "commit-at-start")
    result = reproduce("vae_k1", "--quick", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr[-3000:]
    stored = json.loads((tmp_path / "results" / "quick" / "vae_k1.json").read_text())
    assert stored["git_commit"] == "commit-at-start" and "git_commits" not in stored
    sessions = json.loads((tmp_path / "runs" / "vae_k1-quick" / "reproduce.json").read_text())
    assert [s["git_commit"] for s in sessions] == ["commit-at-start"]


def test_a_row_continued_past_a_session_without_a_recorded_commit_says_so():
    """vae_k1's first 1,000 epochs ran before sessions recorded their commit: its result names the
    first commit known and lists the unrecorded one before it, and the table shows both."""
    stored = _commits([{"session": 0}, {"session": 1, "git_commit": "b"}])
    assert stored == {"git_commit": "b", "git_commits": ["unrecorded", "b"]}
    assert table_commits(stored) == "commits `unrecorded`, then `b`"
    assert _commits([{"git_commit": "a"}, {"git_commit": "a"}]) == {"git_commit": "a"}
    assert table_commits({"git_commit": "a"}) == "commit `a`"


def test_a_row_waiting_on_its_issue_is_one_sentence_and_exit_2(tmp_path):
    registry = _registry(tmp_path, {"later": _vae_row(experiment="not_yet", waits_on=13)})
    result = reproduce("later", "--registry", str(registry), "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dgm-reproduce: error: row 'later' is not runnable yet: conf/experiment/not_yet.yaml does not "
        "exist (it waits on issue 13)."]
    for args in (["no_such_row"], [], ["vae_k1", "--list"], ["--bogus"]):
        bad = reproduce(*args, "--runs-dir", str(tmp_path))
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)
        assert "Traceback" not in bad.stderr


def _registry(tmp_path: Path, rows: dict) -> Path:
    path = tmp_path / "baselines.yaml"
    path.write_text(yaml.safe_dump({"rows": rows}))
    return path


def _vae_row(**extra) -> dict:
    return {"title": "a VAE", "paper": "a paper", "table": "Table 1", "source": "second-hand", "experiment": "vae_mnist",
            "metric": "test/nll_iwae", "published": 100.0, "direction": "lower", "tolerance": 1.0,
            "protocol": ["eval.iwae_k=4"], **extra}


def _result(hash_: str, value: float, **extra) -> dict:
    return {"row": "r", "quick": False, "config_hash": hash_, "value": value, "metrics_mean": {"test/nll_iwae": value},
            "metrics_min": {"test/nll_iwae": value}, "seeds": [0], "wall_time_s": 120.0,
            "hardware": {"cpu": "Test CPU", "cpu_cores": 2}, "git_commit": "abc", "package_version": "0.1.0",
            "finished": "2026-12-01 00:00:00 UTC", **extra}


def test_table_from_fixture_results_marks_each_status_and_keeps_the_hand_written_text(tmp_path):
    rows = {"good": _vae_row(), "close": _vae_row(), "far": _vae_row(), "old": _vae_row(),
            "higher": _vae_row(metric="test/elbo", direction="higher", published=-90.0, tolerance=0.5),
            "missing": _vae_row(), "gpu": _vae_row(needs=["gpu"]), "later": _vae_row(experiment="not_yet", waits_on=13)}
    registry = _registry(tmp_path, rows)
    current = config_hash(["experiment=vae_mnist", "eval.iwae_k=4"])
    results = tmp_path / "results"
    results.mkdir()
    values = {"good": 99.5, "close": 100.8, "far": 103.0, "old": 99.0}
    for name, value in values.items():
        (results / f"{name}.json").write_text(json.dumps(_result("0" * 16 if name == "old" else current, value)))
    (results / "higher.json").write_text(json.dumps(_result(current, 0, metrics_mean={"test/elbo": -90.4},
                                                             metrics_min={"test/elbo": -90.4})))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Experiments\n\nhand-written intro\n\n{BEGIN}\nold table\n{END}\n\nhand-written outro\n")
    listed = reproduce("--list", "--registry", str(registry), "--results-dir", str(results))
    table = reproduce("--table", "--registry", str(registry), "--results-dir", str(results), "--readme", str(readme))
    assert listed.returncode == 0 and table.returncode == 0, listed.stderr + table.stderr
    text = readme.read_text()
    assert text.startswith("# Experiments\n\nhand-written intro\n\n") and text.endswith(f"{END}\n\nhand-written outro\n")
    assert "old table" not in text
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    expected = {"good": ("reproduced", "-0.5"), "close": ("within tolerance", "+0.8"), "far": ("below", "+3"),
                "old": ("stale", "-1"), "higher": ("within tolerance", "-0.4"), "missing": ("not run", None),
                "gpu": ("needs GPU", None), "later": ("not runnable yet (waits on issue 13)", None)}
    for name, (status, gap) in expected.items():
        cells = [c.strip() for c in lines[name].strip("|").split(" | ")]
        assert cells[7] == status, (name, cells)
        assert cells[6] == (gap or "-"), (name, cells)
        assert cells[8] == f"`dgm-reproduce {name}`"
    listing = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "stale" in listing["old"] and "below" in listing["far"] and "reproduced" in listing["good"]
    assert "Test CPU, 2 cores" in text and "2.0 min wall time" in text


def test_resume_continues_a_stopped_row_to_the_end_of_its_schedule(tmp_path):
    tiny = ["data=digits", "trainer.max_epochs=30", "trainer.max_time=null", "callbacks.image_samples.every_n_epochs=100",
            "callbacks.progress_bar.refresh_rate=0"]
    registry = _registry(tmp_path, {"long": _vae_row(overrides=tiny, quick=["trainer.max_epochs=1"])})
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = ["long", "--registry", str(registry), "--runs-dir", str(runs), "--results-dir", str(results)]
    run = runs / "long"
    first = subprocess.Popen([sys.executable, "-m", "dgm_lab.reproduce", *args], cwd=REPO, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (run / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the whole session stops: dgm-reproduce and its dgm-train
    first.wait()
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "summary.json").exists()

    again = reproduce(*args)
    assert again.returncode == 2 and "--resume" in again.stderr  # a fresh start would overwrite it
    resumed = reproduce(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = json.loads((run / "summary.json").read_text())
    steps = 30 * (1437 // 100)  # digits: 1,437 training images in vae_mnist's batches of 100, the short one dropped
    assert done["status"] == "completed" and done["global_step"] == steps
    assert 0 < done["timing"]["iterations"] < steps  # this fit started from the checkpoint, not from scratch
    sessions = json.loads((run / "reproduce.json").read_text())
    assert sessions[-1]["command"] == f"dgm-train resume={run}" and sessions[-1]["returncode"] == 0
    stored = read_result(results / "long.json")
    assert stored["commands"][-1] == f"dgm-train resume={run}"
    assert stored["value"] == done["metrics"]["test/nll_iwae"] and stored["run_folders"] == [str(run)]


def test_resume_lengthens_a_completed_row_whose_config_now_trains_longer(tmp_path):
    """vae_k1 finished 1,000 epochs 0.17 nats outside its tolerance: raising the row's max_epochs and
    --resume continues that run from its last checkpoint (not from scratch), and the result carries
    the row's new hash, so it is not stale; a row whose other settings changed too is not continued."""
    tiny = ["data=digits", "trainer.max_time=null", "callbacks.image_samples.every_n_epochs=100",
            "callbacks.progress_bar.refresh_rate=0"]
    runs, results = tmp_path / "runs", tmp_path / "results"
    run = runs / "long"

    def with_row(version: str, overrides: list[str]) -> list[str]:
        """The arguments for row ``long`` as registry ``version`` of it defines it."""
        (tmp_path / version).mkdir()
        registry = _registry(tmp_path / version, {"long": _vae_row(overrides=tiny + overrides)})
        return ["long", "--registry", str(registry), "--runs-dir", str(runs), "--results-dir", str(results)]

    first = reproduce(*with_row("short", ["trainer.max_epochs=2"]))
    assert first.returncode == 0, first.stderr[-3000:]
    steps_per_epoch = 1437 // 100
    assert json.loads((run / "summary.json").read_text())["global_step"] == 2 * steps_per_epoch

    longer = with_row("longer", ["trainer.max_epochs=4"])
    resumed = reproduce(*longer, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = json.loads((run / "summary.json").read_text())
    assert done["status"] == "completed" and done["global_step"] == 4 * steps_per_epoch
    assert done["timing"]["iterations"] == 2 * steps_per_epoch  # continued from epoch 2's checkpoint
    sessions = json.loads((run / "reproduce.json").read_text())
    assert sessions[-1]["command"] == f"dgm-train resume={run} trainer.max_epochs=4"
    registry = load_registry(Path(longer[2]))
    assert sessions[-1]["config_hash"] == row_hash(registry["long"], registry) != sessions[0]["config_hash"]
    stored = read_result(results / "long.json")
    assert stored["config_hash"] == sessions[-1]["config_hash"]  # not stale against the longer row
    assert stored["value"] == done["metrics"]["test/nll_iwae"]

    again = reproduce(*longer, "--resume")  # nothing more to train: the result is rewritten only
    assert again.returncode == 0 and len(json.loads((run / "reproduce.json").read_text())) == 2
    changed = reproduce(*with_row("changed", ["model.latent_dim=3", "trainer.max_epochs=6"]), "--resume")
    assert changed.returncode == 0 and len(json.loads((run / "reproduce.json").read_text())) == 2
    assert read_result(results / "long.json")["config_hash"] == sessions[-1]["config_hash"]  # shown stale


def test_a_row_after_another_runs_that_row_first_and_trains_on_its_run_folder(tmp_path):
    """m1m2_mnist100 runs after m1_mnist: one command trains M1, then M1+M2 on M1's run folder; a
    second command reuses the completed M1 run instead of training it again."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = ["m1m2_mnist100", "--quick", "--runs-dir", str(runs), "--results-dir", str(results)]
    result = reproduce(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    m1_folder = runs / "m1_mnist-quick"
    stored = json.loads((results / "quick" / "m1m2_mnist100.json").read_text())
    assert f"model.m1_ckpt={m1_folder}" in stored["commands"][0].split()
    assert stored["curve"]["metric"] == "val/error" and stored["curve"]["points"]  # the row's own metric
    assert json.loads((results / "quick" / "m1_mnist.json").read_text())["curve"]["metric"] == "val/elbo"
    assert yaml.safe_load((runs / "m1m2_mnist100-quick" / "config.yaml").read_text())["model"]["m1_ckpt"] == str(m1_folder)
    again = reproduce(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(json.loads((m1_folder / "reproduce.json").read_text())) == 1  # M1 kept, not trained again


def test_a_chained_rows_hash_follows_the_row_it_runs_after(tmp_path):
    chained = _vae_row(after={"row": "m1", "setting": "name"})
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    same = load_registry(_registry(tmp_path / "a", {"m1": _vae_row(), "m2": chained}))
    changed = load_registry(_registry(tmp_path / "b", {"m1": _vae_row(overrides=["model.latent_dim=7"]), "m2": chained}))
    assert config_hash(same["m2"].train_overrides()) == config_hash(changed["m2"].train_overrides())
    assert row_hash(same["m2"], same) != row_hash(changed["m2"], changed)  # a changed M1 makes M1+M2 stale
    assert row_hash(same["m1"], same) == config_hash(same["m1"].train_overrides())


@pytest.mark.parametrize(("after", "sentence"), [
    ({"row": "nowhere", "setting": "model.m1_ckpt"}, "row 'b' of the baselines registry runs after 'nowhere', which is not a row."),
    ("m1", "row 'b' of the baselines registry: after must be a mapping with a row name and a setting"),
    ({"row": "b", "setting": "model.m1_ckpt"}, "rows b -> b of the baselines registry run after each other in a circle."),
])
def test_a_bad_after_in_the_registry_is_one_sentence(tmp_path, after, sentence):
    registry = _registry(tmp_path, {"a": _vae_row(), "b": _vae_row(after=after)})
    result = reproduce("--list", "--registry", str(registry))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"dgm-reproduce: error: {result.stderr.split('error: ', 1)[1].strip()}"]
    assert sentence in result.stderr
