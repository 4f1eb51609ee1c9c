"""Read run folders written by ``dgm-train`` (and Hydra sweep folders of them) into ``Run`` records.

Everything comes from files in the folders (``summary.json``, ``config.yaml``, ``metrics.csv``,
``samples/*.png``); nothing is recomputed and nothing needs a network.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dgm_lab.errors import DataError, UserError
from dgm_lab.metrics import specs
from dgm_lab.run_folder import HYDRA, MARKERS, RunFolder


class NotARunFolderError(UserError):
    """A path given to dgm-compare is neither a run folder nor a sweep of run folders."""


# Config keys that differ between any two runs without saying anything about the experiment.
NOISE_PREFIXES = ("paths.", "hydra.")
NOISE_KEYS = {"run_dir", "hydra", "paths"}
NOISE_PATTERNS = (re.compile(r"^logger\.[^.]+\.id$"),)
# "samples_epoch0003", "modes_step000100", "filters_epoch0002": a kind, then an epoch/step number.
SAMPLE_NAME = re.compile(r"^(?P<kind>.*?)[_-]?(?:epoch|step|iter)?[_-]?(?P<number>\d+)$")
# Sample kinds shown first, in this order; any other kind follows alphabetically.
KIND_ORDER = ("samples", "reconstructions", "interpolations")


@dataclass
class Run:
    """One run folder: what its files say, ready to render."""

    path: Path
    label: str = ""
    summary: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> (step, value)
    samples: dict[str, Path] = field(default_factory=dict)  # kind -> latest grid
    overrides: list[str] = field(default_factory=list)  # the command-line overrides (.hydra/overrides.yaml)

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.summary.get("metrics") or {}).items() if _is_number(v)}

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def dataset(self) -> str:
        """The data the run was trained and scored on: runs on different data never rank together."""
        name = (self.summary.get("data") or {}).get("name")
        if name:
            return str(name)
        target = str((self.config.get("data") or {}).get("_target_") or "")
        return target.rpartition(".")[2] or "unknown data"

    @property
    def monitor(self) -> tuple[str | None, str | None]:
        """The checkpoint metric and its mode ("max"/"min"), from summary.json, else the config."""
        best = self.summary.get("best") or {}
        if best.get("monitor"):
            return best["monitor"], best.get("mode")
        monitor = self.config.get("monitor") or {}
        return monitor.get("metric"), monitor.get("mode")


def collect_runs(patterns: list[str]) -> list[Run]:
    """Expand folders and globs into runs (a sweep folder contributes its numbered jobs), labelled."""
    folders: list[Path] = []
    for pattern in patterns:
        for folder in _expand(pattern):
            folders.extend(_run_folders(folder))
    unique = list(dict.fromkeys(f.resolve() for f in folders))  # a run named twice is shown once
    runs = [read_run(folder) for folder in unique]
    for run, label in zip(runs, run_labels(runs), strict=True):
        run.label = label
    return runs


def run_labels(runs: list[Run]) -> list[str]:
    """Each run named by the command-line overrides that differ between the runs
    (``model.beta=2 seed=1``), as a sweep's jobs are best told apart; the shortest distinct path
    ends (``sweep/0``) when the overrides do not tell them apart."""
    paths = short_labels([run.path for run in runs])
    if len(runs) < 2:
        return paths
    given = [dict(o.lstrip("+~").split("=", 1) for o in run.overrides if "=" in o) for run in runs]
    keys = sorted(k for k in set().union(*given) if len({g.get(k) for g in given}) > 1)
    if not keys:
        return paths
    labels = [" ".join(f"{k}={g[k]}" for k in keys if k in g) or "(defaults)" for g in given]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{path}: {label}" for path, label in zip(paths, labels, strict=True)]


def read_overrides(folder: Path) -> list[str]:
    """The overrides the run was started with, from Hydra's record, without per-run paths
    (``hydra.*``: the run folder) that differ for every run."""
    loaded = _read_yaml_list(folder / HYDRA / "overrides.yaml")
    return [o for o in loaded if isinstance(o, str) and not o.lstrip("+~").startswith(("hydra.", "hydra/", "paths."))]


def read_run(folder: Path) -> Run:
    """Load one run folder; missing optional files just leave their part empty."""
    run = Run(path=folder)
    files = RunFolder(folder)
    if files.summary.exists():
        try:
            run.summary = json.loads(files.summary.read_text())
        except json.JSONDecodeError as error:
            raise NotARunFolderError(f"{files.summary} is not valid JSON ({error}).") from None
    register_plugin_specs(run.summary)
    run.config = run.summary.get("config") or _read_yaml(files.config)
    run.curves = read_curves(files.metrics_csv)
    run.samples = latest_samples(files.samples)
    run.overrides = read_overrides(folder)
    return run


def register_plugin_specs(summary: dict) -> None:
    """Metric-spec rows that plug-in metrics registered in the run (recorded in their protocol), so
    that this process ranks them by their own direction, not by guesses from their names."""
    quality = (summary.get("diagnostics") or {}).get("sample_quality") or {}
    for entry in quality.values():
        rows = ((entry.get("protocol") or {}).get("registered_specs") or {}) if isinstance(entry, dict) else {}
        for row in rows.values():
            specs.register(specs.MetricSpec(**row))


def read_curves(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Lightning's CSVLogger file: one column per metric, empty cells where it was not logged."""
    curves: dict[str, list[tuple[float, float]]] = {}
    if not path.exists():
        return curves
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                step = _float(row.get("step"))
                if step is None:
                    continue
                for name, cell in row.items():
                    value = _float(cell)
                    if name not in ("epoch", "step") and value is not None:
                        curves.setdefault(name, []).append((step, value))
    except (UnicodeDecodeError, csv.Error) as error:  # a binary or corrupted file in the run folder
        raise DataError(f"{path} is not a CSV text file ({type(error).__name__}); move it away to compare the run "
                        "without its learning curves.") from None
    return {name: sorted(points) for name, points in curves.items()}


def latest_samples(folder: Path) -> dict[str, Path]:
    """The grid with the highest epoch/step number of each kind (``samples``, ``reconstructions``...)."""
    best: dict[str, tuple[int, Path]] = {}
    for png in folder.glob("*.png") if folder.is_dir() else []:
        match = SAMPLE_NAME.match(png.stem)
        kind, number = (match["kind"] or png.stem, int(match["number"])) if match else (png.stem, -1)
        if kind not in best or number > best[kind][0]:
            best[kind] = (number, png)
    order = sorted(best, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    return {kind: best[kind][1] for kind in order}


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """``{"model": {"beta": 1}}`` -> ``{"model.beta": 1}``; lists stay values."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def is_noise(key: str, value: object, run_path: Path, run_dirs: set[str]) -> bool:
    """Per-run keys: paths, Hydra's own config, W&B run ids, and any value naming the run's folder
    (``trainer.default_root_dir``, checkpoint ``dirpath``...), which differs for every run."""
    if key in NOISE_KEYS or key.startswith(NOISE_PREFIXES) or any(p.match(key) for p in NOISE_PATTERNS):
        return True
    return isinstance(value, str) and any(d and d in value for d in run_dirs | {str(run_path)})


def config_differences(runs: list[Run]) -> dict[str, list[object]]:
    """Dotted config keys whose values are not the same in every run -> one value per run
    (``MISSING`` where a run lacks the key). A whole section that some runs lack (a config group
    added later, a callback only some runs use) is one row, valued by its sub-keys (a dict)."""
    flats = []
    for run in runs:
        own_dirs = {str(run.summary.get("run_dir") or ""), str((run.config.get("paths") or {}).get("output_dir") or "")}
        flat = flatten(run.config)
        flats.append({k: v for k, v in flat.items() if not is_noise(k, v, run.path, own_dirs)})
    present = [_prefixes(flat) for flat in flats]
    rows: dict[str, list[object]] = {}
    for key in sorted(set().union(*flats)) if flats else []:
        values = [flat.get(key, MISSING) for flat in flats]
        if all(v == values[0] for v in values[1:]):  # Python equality: 1 == 1.0, lists by value
            continue
        section = _absent_section(key, present)
        if section is None:
            rows[key] = values
        elif section not in rows:
            rows[section] = [{k[len(section) + 1:]: v for k, v in flat.items() if k.startswith(f"{section}.")}
                             or MISSING for flat in flats]
    return merge_repeated(rows)


def merge_repeated(rows: dict[str, list[object]]) -> dict[str, list[object]]:
    """One row per setting that the config repeats under several keys with the same values in
    every run (``seed``, ``metrics.seed``, ``callbacks.image_samples.seed``): the first key names
    the others, ``seed (= metrics.seed, ...)``."""
    keys_by_values: dict[str, list[str]] = {}
    values_of: dict[str, list[object]] = {}
    for key, values in rows.items():
        # a key some run lacks is its own row: "absent in the same runs" is no sign of one setting
        fingerprint = repr(values) if all(v is not MISSING for v in values) else key
        keys_by_values.setdefault(fingerprint, []).append(key)
        values_of.setdefault(fingerprint, values)
    rows = {}
    for fingerprint, keys in keys_by_values.items():
        name = min(keys, key=lambda k: (k.count("."), len(k), k))  # the top-level ``seed`` names the rest
        others = [k for k in keys if k != name]
        rows[f"{name} (= {', '.join(others)})" if others else name] = values_of[fingerprint]
    return rows


def _prefixes(flat: dict[str, object]) -> set[str]:
    """Every key and every section above it: ``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``."""
    out = set()
    for key in flat:
        parts = key.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def _absent_section(key: str, present: list[set[str]]) -> str | None:
    """The outermost section above ``key`` that some run lacks entirely, if any."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        section = ".".join(parts[:i])
        if any(section not in keys for keys in present):
            return section
    return None


class _Missing:
    def __repr__(self) -> str:
        return "—"


MISSING = _Missing()


def short_labels(paths: list[Path]) -> list[str]:
    """The shortest trailing path parts that tell the runs apart: ``run_a``, ``sweep/0``..."""
    for depth in range(1, max((len(p.parts) for p in paths), default=1) + 1):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def _expand(pattern: str) -> list[Path]:
    """A glob's directory matches (files it matches are skipped), or the one named folder."""
    if glob.has_magic(pattern):
        matches = sorted(Path(m) for m in glob.glob(pattern) if Path(m).is_dir())
        if not matches:
            raise NotARunFolderError(f"{pattern} matches no folder; pass run folders written by dgm-train or sweep folders.")
        return matches
    path = Path(pattern)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise NotARunFolderError(f"{pattern} {what}; pass run folders written by dgm-train or sweep folders.")
    return [path]


def _run_folders(folder: Path) -> list[Path]:
    """The folder itself when it is a run; its numbered job folders when it is a sweep."""
    if is_run(folder):
        return [folder]
    jobs = sorted((p for p in folder.iterdir() if p.name.isdigit() and is_run(p)), key=lambda p: int(p.name))
    if jobs:
        return jobs
    raise NotARunFolderError(
        f"{folder} is neither a run folder (no {' or '.join(MARKERS)}) nor a sweep folder "
        "(no numbered job folders holding one); pass folders written by dgm-train or dgm-train -m."
    )


def is_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / marker).is_file() for marker in MARKERS)


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise NotARunFolderError(f"{path} is not valid YAML ({error}).") from None
    return loaded if isinstance(loaded, dict) else {}


def _read_yaml_list(path: Path) -> list:
    try:
        loaded = yaml.safe_load(path.read_text()) if path.exists() else []
    except yaml.YAMLError:
        return []
    return loaded if isinstance(loaded, list) else []


def _float(cell: str | None) -> float | None:
    try:
        return float(cell) if cell not in (None, "") else None
    except ValueError:
        return None


def _is_number(value: object) -> bool:
    """Numbers, NaN and inf included (a diverged run's NaN is shown, never ranked)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
