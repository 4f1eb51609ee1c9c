"""The benchmark runner and the GPU script in smoke mode: every measurement runs and writes its
JSON and markdown with finite ratios (no timing is asserted: these CPUs are shared)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from tests.conftest import REPO

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "WANDB_MODE": "offline"}


def test_runner_smoke_writes_json_and_table_with_finite_ratios(tmp_path):
    out, readme = tmp_path / "run.json", tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nkept text\n")
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), "--readme", str(readme)],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    sections = {r["section"] for r in record["rows"]}
    assert sections == {"training step", "time to quality", "options", "start-up", "evaluation", "data", "scaling",
                        "peer library"}
    measured = [r for r in record["rows"] if "ratio" in r]
    assert len(measured) >= 15
    for r in measured:
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"] and r["repeats"] >= 1, r
        assert math.isfinite(r["candidate"]) and math.isfinite(r["baseline"]), r
    for r in record["rows"]:
        assert "ratio" in r or r["note"].startswith("not "), r  # an unmeasured row says why
    assert record["import_profile"] and record["import_profile"][0]["cumulative_s"] > 0
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nkept text\n")  # the table replaces only its own block
    table = text.split("<!-- benchmark table: start -->")[1].split("<!-- benchmark table: end -->")[0]
    assert table.count("\n| ") == len(record["rows"]) + 1  # header + one line per row
    assert "dgm-train --help" in table and "training step" in table
    # the small models' overhead split into Lightning's loop and dgm-lab's own callbacks
    bare = {r["name"] for r in measured if r["name"].endswith("bare Lightning")}
    assert bare == {"vae_mlp: pure step, bare Lightning", "rbm_cd1: pure step, bare Lightning"}


def test_gpu_script_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--smoke", "--out", str(out)], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert [t["name"] for t in record["training"]] == ["dcgan", "sngan_resnet"]
    for case in record["training"]:
        assert math.isfinite(case["ratio_dgm_lab_over_hand"]) and case["dgm_lab_images_per_s"] > 0
    assert record["evaluation"]["num_samples"] == 20 and record["evaluation"]["wall_time_s"] > 0


def test_gpu_script_without_a_gpu_says_so_in_one_sentence():
    if __import__("torch").cuda.is_available():
        return
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu"], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert result.returncode == 1 and "no CUDA device here" in result.stderr and "Traceback" not in result.stderr


def test_start_up_measures_the_same_run_folder_again(tmp_path):
    """Every repetition of the start-up figure starts dgm-train over the same folder: the folder is
    cleared first (dgm-train refuses to start over an existing run, which ended a full run)."""
    from benchmarks.startup import to_first_step

    measure = to_first_step(["logger=none", "data=digits"], tmp_path)
    assert measure() > 0 and measure() > 0
