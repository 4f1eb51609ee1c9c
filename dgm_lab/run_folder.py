"""The run folder: the names of every file ``dgm-train`` writes, and the typed ``Summary`` record.

Every writer and reader (the run, checkpoint lookup, ``dgm-eval``, ``dgm-sample``, callbacks,
sweeps, ``dgm-compare``) goes through this module, so the layout is written down once::

    <run>/config.yaml         the resolved config (no interpolations): what a run is rebuilt from
    <run>/.hydra/             Hydra's composed config and overrides
    <run>/checkpoints/        last.ckpt and best-epochNNN.ckpt (by the monitored metric)
    <run>/samples/            PNG grids; dgm-sample's .npz files
    <run>/metrics.csv         every logged scalar
    <run>/summary.json        ``Summary``: status, final metrics, best checkpoint, timing, diagnostics
    <run>/eval.json           dgm-eval's record
    <run>/wandb/              the offline W&B run
    <run>/run.lock            held by the dgm-train writing the folder (``dgm_lab.run_lock``)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from omegaconf import OmegaConf

from dgm_lab.files import write_atomically

CONFIG = "config.yaml"
HYDRA = ".hydra"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
SAMPLES = "samples"
METRICS_CSV = "metrics.csv"
SUMMARY = "summary.json"
EVAL_RECORD = "eval.json"
# A folder is a run when it holds one of these (summary.json is written even by failed runs).
MARKERS = (SUMMARY, CONFIG)
STATUSES = ("completed", "failed", "diverged", "interrupted")


@dataclass
class Summary:
    """``summary.json``: what a run reached. ``metrics`` holds every final scalar (nats, bits/dim...,
    see dgm_lab.metrics.specs); ``best`` the monitored metric, its mode, score and checkpoint file;
    ``data`` the dataset's name, example shape and class names in label order."""

    status: str = "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    best: dict = field(default_factory=dict)
    seed: int | None = None
    run_dir: str = ""
    data: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    global_step: int | None = None
    wall_time_s: float | None = None
    diagnostics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        """The JSON object, without empty optional parts (no ``error`` for a completed run)."""
        record = asdict(self)
        for key in ("data", "timing", "diagnostics", "error", "global_step"):
            if record[key] in (None, {}):
                del record[key]
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Summary:
        """Read a summary.json object; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


def rebase_paths(node, old: str, new: str) -> None:
    """Rewrite, in place, every string of a config (DictConfig/ListConfig or plain containers)
    that is ``old`` or a path under it, onto ``new``: the paths a run folder's config names
    inside the folder follow the folder when it is copied or moved."""
    old = old.rstrip("/")
    new = new.rstrip("/")

    def moved(value):
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return new + value[len(old):]
        return value

    keys = node.keys() if hasattr(node, "keys") else range(len(node))
    for key in list(keys):
        if OmegaConf.is_config(node) and OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, str):
            node[key] = moved(value)
        elif hasattr(value, "keys") or isinstance(value, list) or OmegaConf.is_list(value):
            rebase_paths(value, old, new)


def scalar_metrics(metrics) -> dict[str, float]:
    """The one-element tensors and numbers of a Lightning metrics mapping, as floats."""
    out = {}
    for key, value in dict(metrics).items():
        if hasattr(value, "numel") and value.numel() == 1:  # a one-element tensor (no torch import here)
            value = value.item()
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path).expanduser().resolve())

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def metrics_csv(self) -> Path:
        return self.path / METRICS_CSV

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def eval_record(self) -> Path:
        return self.path / EVAL_RECORD

    def whole_checkpoints(self) -> list[Path]:
        """The checkpoint files in checkpoints/, newest first, without the hidden temporaries that a
        write killed halfway leaves (``.<name>.<id>.tmp.ckpt``)."""
        found = [p for p in self.checkpoints.glob("*.ckpt") if not p.name.startswith(".")] \
            if self.checkpoints.is_dir() else []
        return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)

    def holds_run(self) -> bool:
        """Whether a run was already trained here (its config or a checkpoint), not only started."""
        return self.config.exists() or any(self.checkpoints.glob("*.ckpt"))

    def is_run(self) -> bool:
        return any((self.path / marker).exists() for marker in MARKERS)

    def read_summary(self) -> Summary | None:
        """The run's summary, or None when it has none or it cannot be parsed (an interrupted write)."""
        try:
            return Summary.from_dict(json.loads(self.summary.read_text()))
        except (OSError, json.JSONDecodeError, TypeError):
            return None

    def write_summary(self, summary: Summary) -> None:
        """Write summary.json atomically: a reader never sees half a file, a full disk leaves the old one."""
        text = json.dumps(summary.to_dict(), indent=2, default=str)
        write_atomically(self.summary, lambda temporary: temporary.write_text(text))

    def best_checkpoint(self) -> Path | None:
        """The best checkpoint the summary names, looked up in this folder's checkpoints/ (a copied
        or moved run folder must not lead back to the original), else None."""
        summary = self.read_summary()
        recorded = (summary.best or {}).get("checkpoint") if summary else None
        if not recorded:
            return None
        candidate = self.checkpoints / Path(recorded).name
        return candidate if candidate.is_file() else None
