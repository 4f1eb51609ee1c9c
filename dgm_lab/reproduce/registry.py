"""The baselines registry (``experiments/baselines.yaml``): one typed row per published number."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dgm_lab.config import CONF_DIR
from dgm_lab.errors import ConfigError, DataError

DIRECTIONS = ("higher", "lower")
NEEDS = ("gpu", "data")
REGISTRY = Path(CONF_DIR).parent / "experiments" / "baselines.yaml"  # a source checkout's registry
UPSTREAM_PLACEHOLDER = "runs/{row}"  # stands for the run folder of an ``after`` row in the config hash


@dataclass(frozen=True)
class Target:
    """One published number and how a reproduced value is judged against it."""

    metric: str
    published: float | None
    direction: str
    tolerance: float

    def gap(self, value: float) -> float | None:
        """Reproduced minus published (in the metric's units); None without a published value."""
        return None if self.published is None else value - self.published

    def verdict(self, value: float) -> str:
        """``reproduced`` (as good or better), ``within tolerance`` (worse by at most the
        tolerance) or ``below``; ``measured`` when there is nothing to compare with."""
        if self.published is None:
            return "measured"
        worse_by = (self.published - value) if self.direction == "higher" else (value - self.published)
        if worse_by <= 1e-9:
            return "reproduced"
        return "within tolerance" if worse_by <= self.tolerance + 1e-9 else "below"


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    paper: str
    table: str
    source: str
    experiment: str
    targets: tuple[Target, ...]
    overrides: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    needs: tuple[str, ...] = ()
    waits_on: int | None = None
    budget: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)
    # (row, setting): that row is run first and its run folder given to this one's dgm-train as
    # ``setting`` (M1+M2 models the codes of the M1 row's VAE: model.m1_ckpt)
    after: tuple[str, str] | None = None

    @property
    def target(self) -> Target:
        """The headline target (the row's ``metric``)."""
        return self.targets[0]

    @property
    def experiment_file(self) -> Path:
        return Path(CONF_DIR) / "experiment" / f"{self.experiment}.yaml"

    def train_overrides(self, upstream: Path | str | None = None) -> list[str]:
        """What the row adds to dgm-train, without seed, quick settings or run folder. A row run
        ``after`` another gets that row's run folder ``upstream`` (a placeholder when not given:
        the config hash does not depend on where this machine keeps runs)."""
        chained = [f"{self.after[1]}={upstream or UPSTREAM_PLACEHOLDER.format(row=self.after[0])}"] if self.after else []
        return [f"experiment={self.experiment}", *self.overrides, *chained, *self.protocol]

    def command(self, seed: int, quick: bool = False, upstream: Path | str | None = None) -> list[str]:
        """The dgm-train arguments of one seed (the run folder is added by the runner)."""
        return [*self.train_overrides(upstream), f"seed={seed}", *(self.quick if quick else ()), "logger=csv"]


def _strings(value, where: str) -> tuple[str, ...]:
    """A list of override strings; one level of nesting is flattened (YAML anchors of lists)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataError(f"{where} must be a list of key=value strings.")
    flat = []
    for item in value:
        flat.extend(item if isinstance(item, list) else [item])
    if not all(isinstance(item, str) for item in flat):
        raise DataError(f"{where} must be a list of key=value strings.")
    return tuple(flat)


def _target(spec: dict, where: str) -> Target:
    missing = [key for key in ("metric", "published", "direction", "tolerance") if key not in spec]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}.")
    if spec["direction"] not in DIRECTIONS:
        raise DataError(f"{where}: direction must be higher or lower, got {spec['direction']!r}.")
    published = spec["published"]
    return Target(str(spec["metric"]), None if published is None else float(published), spec["direction"],
                  float(spec["tolerance"]))


def _row(name: str, spec: dict) -> Row:
    where = f"row {name!r} of the baselines registry"
    required = ("title", "paper", "table", "source", "experiment")
    missing = [key for key in required if key not in spec]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}.")
    targets = [_target(spec, where)] + [_target(extra, f"{where} (also)") for extra in spec.get("also") or []]
    needs = tuple(spec.get("needs") or ())
    unknown = [need for need in needs if need not in NEEDS]
    if unknown:
        raise DataError(f"{where}: needs may list gpu and data only, got {unknown}.")
    known = {*required, "metric", "published", "direction", "tolerance", "also", "overrides", "protocol",
             "quick", "seeds", "needs", "waits_on", "budget", "note", "after"}
    after = spec.get("after")
    if after is not None:
        if not (isinstance(after, dict) and set(after) == {"row", "setting"}
                and all(isinstance(v, str) and v for v in after.values())):
            raise DataError(f"{where}: after must be a mapping with a row name and a setting, as "
                            "{row: m1_mnist, setting: model.m1_ckpt}.")
        after = (after["row"], after["setting"])
    return Row(name=name, title=spec["title"], paper=spec["paper"], table=str(spec["table"]), source=spec["source"],
               experiment=spec["experiment"], targets=tuple(targets),
               overrides=_strings(spec.get("overrides"), f"{where}: overrides"),
               protocol=_strings(spec.get("protocol"), f"{where}: protocol"),
               quick=_strings(spec.get("quick"), f"{where}: quick"),
               seeds=tuple(int(s) for s in spec.get("seeds") or [0]), needs=needs, waits_on=spec.get("waits_on"),
               budget=str(spec.get("budget") or ""), note=str(spec.get("note") or ""),
               extra={k: v for k, v in spec.items() if k not in known}, after=after)


def load_registry(path: Path | str | None = None) -> dict[str, Row]:
    """The rows of the registry file, by name, in file order."""
    path = Path(path) if path else REGISTRY
    if not path.is_file():
        raise DataError(f"no baselines registry at {path}: run dgm-reproduce from a source checkout or pass --registry.")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DataError(f"{path} is not valid YAML ({str(error).splitlines()[0]}).") from None
    if not isinstance(content, dict) or not isinstance(content.get("rows"), dict):
        raise DataError(f"{path} has no 'rows' mapping of row name to settings.")
    rows = {name: _row(name, spec) for name, spec in content["rows"].items()}
    for name in rows:
        _check_chain(rows, name)
    return rows


def _check_chain(rows: dict[str, Row], name: str) -> None:
    """A row's ``after`` names a row of the registry, and following them never comes back."""
    seen = [name]
    while rows[seen[-1]].after is not None:
        upstream = rows[seen[-1]].after[0]
        if upstream not in rows:
            raise DataError(f"row {seen[-1]!r} of the baselines registry runs after {upstream!r}, which is not a row.")
        if upstream in seen:
            raise DataError(f"rows {' -> '.join([*seen, upstream])} of the baselines registry run after each other in a circle.")
        seen.append(upstream)


def upstream_rows(rows: dict[str, Row], row: Row) -> list[Row]:
    """The rows ``row`` runs after, nearest first."""
    chain = []
    while row.after is not None:
        row = rows[row.after[0]]
        chain.append(row)
    return chain


def find_row(rows: dict[str, Row], name: str) -> Row:
    if name not in rows:
        raise ConfigError(f"no baseline row named {name!r}; dgm-reproduce --list shows the {len(rows)} rows.")
    return rows[name]
