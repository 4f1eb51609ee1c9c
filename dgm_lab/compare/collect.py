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
from dgm_lab.run_folder import MARKERS, RunFolder


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

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.summary.get("metrics") or {}).items() if _is_number(v)}

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

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
    for run, label in zip(runs, short_labels([r.path for r in runs]), strict=True):
        run.label = label
    return runs


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


def _float(cell: str | None) -> float | None:
    try:
        return float(cell) if cell not in (None, "") else None
    except ValueError:
        return None


def _is_number(value: object) -> bool:
    """Numbers, NaN and inf included (a diverged run's NaN is shown, never ranked)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
