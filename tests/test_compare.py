"""``dgm-compare`` on real ``dgm-train`` runs: report content, bad folders, and the page in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dgm_lab.compare.collect import MISSING, Run, collect_runs, config_differences, latest_samples
from dgm_lab.compare.report import best_indices
from dgm_lab.metrics.specs import direction as metric_direction
from tests.conftest import FAST, REPO, run_cli
from tests.inprocess import run_main

# Two epochs so each kind has an older grid that must NOT be picked; logging every 10 steps so
# train/loss has a curve (22 batches per epoch on digits).
TRAIN = [o for o in FAST if not o.startswith("trainer.max_epochs")] + [
    "trainer.max_epochs=2", "trainer.log_every_n_steps=10"]
# Three jobs that differ in latent_dim, beta and seed; laid out like a sweep (numbered folders).
JOBS = [["model.latent_dim=8"], ["model.latent_dim=4", "model.beta=2"], ["model.latent_dim=4", "seed=1"]]
KINDS = ("samples", "reconstructions", "interpolations")
LABELS = ["model.latent_dim=8", "model.beta=2 model.latent_dim=4", "model.latent_dim=4 seed=1"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """``<tmp>/sweep/{0,1,2}``: three real digits runs, one after the other in this process."""
    root = tmp_path_factory.mktemp("compare") / "sweep"
    for job in range(len(JOBS)):
        result = run_cli("dgm-train", *TRAIN, *JOBS[job], f"hydra.run.dir={root / str(job)}")
        assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> dict:
    """The report on the sweep folder, written by the real command; its HTML, markdown and runs."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = compare(str(sweep), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(len(JOBS))]
    return {"html_path": out, "html": out.read_text(), "md": out.with_suffix(".md").read_text(),
            "summaries": summaries, "stdout": result.stdout}


def compare(*args: str) -> subprocess.CompletedProcess:
    """``dgm-compare args...`` as a user runs it (its ``main`` in this process: ``tests.inprocess``)."""
    return run_main("dgm-compare", *args, cwd=REPO, timeout=60)


def md_row(md: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``first_cell``."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return cells[1:]
    raise AssertionError(f"no row {first_cell!r} in:\n{md}")


def test_markdown_shows_config_differences_without_per_run_noise(report):
    md = report["md"]
    assert md_row(md, "`model.latent_dim`") == ["8", "4", "4"]
    assert md_row(md, "`model.beta`") == ["1", "2", "1"]  # one number format: 1 and 1.0 alike
    seed_rows = [line for line in md.splitlines() if line.startswith("| `seed")]
    assert len(seed_rows) == 1 and seed_rows[0].endswith("| 0 | 0 | 1 |")  # one row, however many keys hold it
    # Folders, W&B ids and paths differ per run but say nothing about the experiment.
    for noise in ("paths.", "default_root_dir", "dirpath", "hydra", "run_dir"):
        assert noise not in md.split("## Config differences")[1].split("## Final metrics")[0], noise


def test_markdown_metrics_match_summaries_and_bold_the_best(report):
    md, summaries = report["md"], report["summaries"]
    elbo = [s["metrics"]["val/elbo"] for s in summaries]
    cells = md_row(md, "val/elbo ↑")
    assert [float(c.strip("*")) for c in cells] == pytest.approx(elbo, rel=1e-4)
    assert [c.startswith("**") for c in cells] == [v == max(elbo) for v in elbo]  # higher ELBO wins
    nll = [s["metrics"]["test/nll_iwae"] for s in summaries]
    assert [c.startswith("**") for c in md_row(md, "test/nll_iwae ↓")] == [v == min(nll) for v in nll]
    assert md_row(md, LABELS[0])[:2] == ["completed", "0"] and md_row(md, LABELS[2])[:2] == ["completed", "1"]
    assert md_row(md, LABELS[1])[2] == f"{summaries[1]['wall_time_s']:.1f}"  # wall time


def test_report_embeds_latest_grids_and_one_curve_per_run_and_metric(report):
    html, md = report["html"], report["md"]
    assert "3 runs" in report["stdout"]
    for kind in KINDS:  # the newest grid of each kind, linked relative to the markdown file
        assert md.count(f"{kind}_epoch0002.png") == 2 * 3 and f"{kind}_epoch0001" not in md
    assert html.count('src="data:image/png;base64,') == 3 * len(KINDS)
    # Default curves: the monitored metric and train/loss, one path per run in each.
    for metric in ("val/elbo", "train/loss"):
        assert len(re.findall(rf'<path data-run="[^"]+" data-metric="{metric}"', html)) == 3, metric
    assert "http://" not in html and "https://" not in html and "<link" not in html  # nothing to fetch


def test_run_folders_and_globs_give_the_same_runs_as_the_sweep(sweep):
    runs = collect_runs([str(sweep / "0"), str(sweep / "[12]"), str(sweep / "1")])  # 1 named twice
    assert [run.label for run in runs] == LABELS  # jobs are named by the overrides that differ
    assert [run.config["model"]["latent_dim"] for run in runs] == [8, 4, 4]
    assert {"val/elbo", "train/loss"} <= set(runs[0].curves)


def test_chosen_metrics_are_plotted_and_unknown_ones_named(sweep, tmp_path):
    out = tmp_path / "chosen.html"
    result = compare(str(sweep), "--metrics", "val/bpd,val/kl", "--out", str(out))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert re.findall(r'<svg class="chart"[^>]* data-metric="([^"]+)"', html) == ["val/bpd", "val/kl"]
    result = compare(str(sweep), "--metrics", "val/nope", "--out", str(out))
    assert result.returncode == 2 and "val/nope" in result.stderr and "val/elbo" in result.stderr


@pytest.mark.parametrize("make", ["empty", "missing", "file", "sweep_of_nothing"])
def test_bad_folder_is_one_sentence_and_exit_2(tmp_path, make):
    target = tmp_path / "target"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("not a run")
    elif make == "sweep_of_nothing":
        (target / "0").mkdir(parents=True)  # a numbered folder with no run in it
    result = compare(str(target), "--out", str(tmp_path / "r.html"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dgm-compare: error:") and str(target) in lines[0], result.stderr
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("name", "direction"), [
    ("val/elbo", "max"), ("test/nll_iwae", "min"), ("test/bpd_iwae", "min"), ("train/loss", "min"),
    ("val/acc", "max"), ("val/modes_covered", "max"), ("val/high_quality", "max"), ("val/pseudo_loglik", "max"),
    ("test/is", "max"), ("test/fid", "min"), ("test/kid_mean", "min"), ("val/error", "min"),
    ("val/kl", None), ("val/active_units", None), ("val/distance", None),  # "is" only as a whole word
    ("val/generator_step", None), ("train/d_loss", None), ("val/g_loss", None),  # a game's losses do not rank
    ("val/fid_lenet", "min"), ("test/is_lenet_std", None), ("test/loglik_ais_low", "max"), ("test/my_nll", "min"),
])
def test_metric_direction_rule(name, direction):
    assert metric_direction(name) == direction


def test_unhinted_metric_follows_monitor_mode_and_ties_are_not_highlighted():
    assert metric_direction("val/new_score", {"val/new_score": "max"}) == "max"
    assert best_indices([1.0, 3.0, float("nan"), 3.0], "max") == {1, 3}
    assert best_indices([2.0, 2.0], "min") == set() and best_indices([1.0, 5.0], None) == set()


def test_latest_sample_per_kind_by_epoch_or_step(tmp_path):
    for name in ("samples_epoch0002", "samples_epoch0010", "samples_epoch0009", "modes_step000100",
                 "modes_step000050", "filters_epoch0001", "grid"):
        (tmp_path / f"{name}.png").write_bytes(b"")
    latest = {kind: path.name for kind, path in latest_samples(tmp_path).items()}
    assert latest == {"samples": "samples_epoch0010.png", "filters": "filters_epoch0001.png",
                      "grid": "grid.png", "modes": "modes_step000100.png"}
    assert list(latest)[0] == "samples"  # samples first, then the others alphabetically


def test_config_differences_ignore_paths_ids_and_own_folder(tmp_path):
    def run(name: str, beta: float) -> Run:
        folder = tmp_path / name
        return Run(path=folder, summary={"run_dir": str(folder)}, config={
            "model": {"beta": beta, "latent_dim": 8}, "paths": {"output_dir": str(folder)},
            "logger": {"wandb": {"id": name, "project": "p"}}, "trainer": {"default_root_dir": str(folder)},
            "hydra": {"job": {"num": name}}})

    assert config_differences([run("a", 1.0), run("b", 2.0)]) == {"model.beta": [1.0, 2.0]}
    assert config_differences([run("a", 1.0), run("b", 1)]) == {}  # 1 and 1.0 are the same value
    # A section only one run has is one row (its sub-keys), not one row per leaf.
    extra = run("c", 1.0)
    extra.config["callbacks"] = {"quality": {"every": 1, "fid": {"on": True}}}
    assert config_differences([run("a", 1.0), extra]) == {"callbacks": [MISSING, {"quality.every": 1, "quality.fid.on": True}]}


def _browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return "Debian chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_report_renders_offline_in_chromium(report, tmp_path):
    """The page in a real browser: no errors, no requests beyond the file, every curve and image."""
    from playwright.sync_api import sync_playwright

    url = report["html_path"].resolve().as_uri()
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            counts = page.evaluate("""() => ({
                runs: document.querySelectorAll('#runs tr[data-run]').length,
                curves: document.querySelectorAll('svg.chart path[data-run]').length,
                charts: document.querySelectorAll('svg.chart').length,
                images: document.querySelectorAll('img').length,
                loaded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
            })""")
            # The legend script works: clicking a run hides its curves in every chart.
            page.click(f".legend span[data-run='{LABELS[0]}']")
            hidden = page.evaluate(f"document.querySelectorAll('svg .series.hidden[data-run=\"{LABELS[0]}\"]').length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert [u for u in requests if u != url and not u.startswith("data:")] == []
    assert counts == {"runs": 3, "curves": 3 * 2, "charts": 2, "images": 3 * len(KINDS), "loaded": 3 * len(KINDS)}
    assert hidden == 2


def test_console_script_is_installed():
    """pyproject's [project.scripts] entry, once the package is (re)installed."""
    script = shutil.which("dgm-compare", path=str(Path(sys.executable).parent))
    assert script, "dgm-compare is not installed next to python; run pip install -e ."
    assert subprocess.run([script, "--help"], capture_output=True, text=True).returncode == 0


def test_plugin_metric_directions_come_from_the_runs_protocol(tmp_path, monkeypatch):
    """A fresh dgm-compare process learns a plug-in metric's direction from the rows its run recorded."""
    from dgm_lab.compare.collect import collect_runs
    from dgm_lab.metrics import specs

    monkeypatch.setattr(specs, "BY_NAME", dict(specs.BY_NAME))
    row = {"name": "sharpness", "direction": "min", "unit": "", "headline": None, "digits": 3, "description": "x"}
    for index, value in enumerate((0.2, 0.7)):
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        summary = {"status": "completed", "metrics": {"test/sharpness_lenet": value},
                   "diagnostics": {"sample_quality": {"test": {"protocol": {"registered_specs": {"sharpness": row}}}}}}
        (folder / "summary.json").write_text(json.dumps(summary))
    assert specs.direction("test/sharpness_lenet") is None
    runs = collect_runs([str(tmp_path / "run*")])
    assert len(runs) == 2 and specs.direction("test/sharpness_lenet") == "min"


def test_hostile_run_folders_are_escaped_in_html_and_markdown_and_never_built(tmp_path):
    """Run folders whose config values, metric names and sample file names carry HTML, links and
    table breaks: the page and its markdown copy show them as text; the config's _target_ is
    only read (dgm-compare builds nothing), so its payload does not run."""
    marker = tmp_path / "pwned"
    hostile = {"html": "<script>alert(1)</script>", "img": "<img src=x onerror=y>", "link": "[a](javascript:z)",
               "pipe": "p|q", "tick": "`x`", "amp": "&amp;"}
    for index in range(2):
        run = tmp_path / "runs" / str(index)
        (run / "samples").mkdir(parents=True)
        (run / "config.yaml").write_text(json.dumps({
            "seed": index, **{key: f"{value} {index}" for key, value in hostile.items()},
            "model": {"_target_": "os.makedirs", "name": str(marker)}}))
        (run / "summary.json").write_text(json.dumps({"status": "completed", "seed": index, "metrics": {
            "val/elbo": -1.0 - index, f"val/<b>{index}</b>": 1.0}}))
        (run / "metrics.csv").write_text(f"epoch,step,val/elbo\n0,{index + 1},-1.0\n")
        Image.new("L", (4, 4)).save(run / "samples" / "<i>grid](javascript:x) .png")
    out = tmp_path / "report.html"
    result = compare(str(tmp_path / "runs"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    html, md = out.read_text(), out.with_suffix(".md").read_text()
    for raw in ("<script>alert", "<img src=x", "<b>0</b>", "<i>grid"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 0" in html and "&lt;img src=x onerror=y&gt; 1" in html
    assert not re.search(r"(?<!\\)[<>]", md), "an unescaped < or > in the markdown"
    cells = {key: md_row(md, f"`{key}`") for key in hostile}
    assert cells["html"][0] == "\\<script\\>alert(1)\\</script\\> 0"
    assert cells["link"][1] == "\\[a\\](javascript:z) 1" and cells["tick"][0] == "\\`x\\` 0"
    assert cells["amp"][0] == "\\&amp; 0"
    assert "| `pipe` | p\\|q 0 | p\\|q 1 |" in md  # the escaped | splits no cell
    assert "![\\<i\\>grid\\](javascript:x) .png](runs/0/samples/%3Ci%3Egrid%5D%28javascript%3Ax%29%20.png)" in md
    assert not marker.exists()


def _fake_run(folder: Path, dataset: str, metrics: dict, monitor: tuple[str, str], overrides: list[str],
              lr: float, seed: int) -> None:
    """A run folder as dgm-train leaves it, as far as dgm-compare reads it."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(json.dumps([*overrides, f"hydra.run.dir={folder}"]))
    config = {"seed": seed, "metrics": {"seed": seed}, "optimizer": {"lr": lr}, "data": {"_target_": f"x.{dataset}"},
              "monitor": {"metric": monitor[0], "mode": monitor[1]}}
    (folder / "summary.json").write_text(json.dumps({
        "status": "completed", "metrics": metrics, "seed": seed, "data": {"name": dataset}, "config": config,
        "best": {"monitor": monitor[0], "mode": monitor[1], "score": metrics[monitor[0]]}}))


def test_runs_on_different_datasets_are_warned_about_and_never_ranked_together(tmp_path):
    elbo = ("val/elbo", "max")
    _fake_run(tmp_path / "a", "digits", {"val/elbo": -28.5, "train/loss": 30.0}, elbo, ["model.beta=1"], 3.141592653589793e-4, 0)
    _fake_run(tmp_path / "b", "digits", {"val/elbo": -30.25, "train/loss": 29.0}, elbo, ["model.beta=2"], 1e-3, 1)
    _fake_run(tmp_path / "c", "mnist", {"val/elbo": -203.0, "train/loss": 210.0}, elbo, ["model.beta=4"], 1e-3, 1)
    out = tmp_path / "report" / "mixed.html"
    result = compare(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    md, html = out.with_suffix(".md").read_text(), out.read_text()
    assert "**Warning:** These runs use 2 datasets: digits (2 runs), mnist (1 run)" in md and 'id="warning"' in html
    digits, mnist = md.split("## Final metrics: digits")[1].split("## Final metrics: mnist")
    assert md_row(digits, "val/elbo ↑") == ["**-28.5**", "-30.25"]  # ranked within digits only
    assert md_row(mnist, "val/elbo ↑") == ["-203"]  # alone on its dataset: nothing to beat
    assert md_row(digits, "train/loss ↓") == ["30", "**29**"]  # highlighted within its dataset only
    ranks = {label: md_row(md, label)[5] for label in ("model.beta=1", "model.beta=2", "model.beta=4")}
    assert ranks == {"model.beta=1": "1 of 2", "model.beta=2": "2 of 2", "model.beta=4": "1 of 1"}
    assert md_row(md, "`optimizer.lr`") == ["0.0003142", "0.001", "0.001"]  # four significant digits
    assert md_row(md, "`seed (= metrics.seed)`") == ["0", "1", "1"]


def test_gan_runs_rank_by_their_quality_metric_not_by_losses_or_counters(tmp_path):
    fid = ("val/fid_lenet", "min")
    for name, score, d_loss, steps in (("g1", 40.0, 0.1, 500), ("g2", 25.0, 0.9, 100)):
        _fake_run(tmp_path / name, "mnist", {"val/fid_lenet": score, "train/d_loss": d_loss,
                                             "val/generator_step": steps}, fid, [f"model.n_critic={steps}"], 2e-4, 0)
    out = tmp_path / "gan.html"
    assert compare(str(tmp_path / "g1"), str(tmp_path / "g2"), "--out", str(out)).returncode == 0
    md = out.with_suffix(".md").read_text()
    assert md_row(md, "val/fid_lenet ↓") == ["40", "**25**"]
    assert md_row(md, "train/d_loss") == ["0.1", "0.9"] and md_row(md, "val/generator_step") == ["500", "100"]
    assert md_row(md, "model.n_critic=100")[5] == "1 of 2" and "Ranked by val/fid_lenet ↓" in md
