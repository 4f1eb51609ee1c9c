"""Run one registry row through dgm-train (one subprocess per seed) and store its result.

A row's run folder is ``<runs dir>/<row>[-quick]`` (``.../seed<k>`` per seed for a row of several), outside the work tree by default
(``$XDG_CACHE_HOME/dgm-lab/reproduce``), so that a long run survives a fresh checkout and is continued
with ``--resume`` (dgm-train's own ``resume=``). Every dgm-train invocation is one session in
``<run>/reproduce.json`` (command, start, wall time, exit status, hardware), and ``progress.py``
records when each validation epoch landed. The result, ``<results dir>/<row>.json`` (``quick/<row>.json``
for --quick), holds each seed's metrics, their mean and min, the protocol, the summed wall time,
the hardware, git commit, package version, the commands and the hash of the resolved config.
"""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from dgm_lab.config import CONF_DIR
from dgm_lab.errors import ConfigError, UserError
from dgm_lab.files import user_cache_dir, write_atomically
from dgm_lab.reproduce import progress, provenance
from dgm_lab.reproduce.config_hash import resolved_config, row_hash
from dgm_lab.reproduce.registry import Row, upstream_rows
from dgm_lab.run_folder import RunFolder

REPO = Path(CONF_DIR).parent
RESULTS = REPO / "experiments" / "results"
SESSIONS = "reproduce.json"
UNRECORDED = "unrecorded"  # a session from before reproduce.json recorded its commit


def default_runs_dir() -> Path:
    return user_cache_dir("reproduce")


def run_folder(row: Row, runs_dir: Path, seed: int, quick: bool) -> Path:
    """``<runs dir>/<row>[-quick]`` for a one-seed row, with a ``seed<k>`` folder per seed otherwise."""
    base = Path(runs_dir).expanduser().resolve() / (row.name + ("-quick" if quick else ""))
    return base if len(row.seeds) == 1 else base / f"seed{seed}"


def result_path(row: Row, results_dir: Path, quick: bool) -> Path:
    return Path(results_dir) / ("quick" if quick else "") / f"{row.name}.json"


def display_command(args: list[str]) -> str:
    """The dgm-train command a user types (values with spaces or brackets quoted)."""
    quoted = [f"'{a}'" if any(c in a for c in " []{}()*$") else a for a in args]
    return " ".join(["dgm-train", *quoted])


def seeds_of(row: Row, quick: bool) -> tuple[int, ...]:
    """The row's seeds; --quick, a smoke test, runs the first only."""
    return row.seeds[:1] if quick else row.seeds


def check_runnable(row: Row) -> None:
    if not row.experiment_file.exists():
        waits = f" (it waits on issue {row.waits_on})" if row.waits_on else ""
        raise ConfigError(f"row {row.name!r} is not runnable yet: conf/experiment/{row.experiment}.yaml does not exist{waits}.")


def _sessions(folder: Path) -> list[dict]:
    path = folder / SESSIONS
    return json.loads(path.read_text()) if path.exists() else []


# The settings that only say how long a run trains: a completed run whose row now asks for more of
# it is continued, not refused or retrained (ExponentialLR and the like do not depend on them).
TRAINING_LENGTH = ("max_epochs", "max_steps", "max_time")


def _last_hash(sessions: list[dict]) -> str | None:
    """The config hash the last of ``sessions`` to record one trained under (None if none did)."""
    return next((s["config_hash"] for s in reversed(sessions) if s.get("config_hash")), None)


def _recorded_hash(folder: Path) -> str | None:
    """The config hash of the run in ``folder``: its last session's."""
    return _last_hash(_sessions(folder))


def _override(key: str, value) -> str | None:
    """``key=value`` as a Hydra override; None for a value a command line cannot carry (a mapping)."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{key}={value}"
    return f"{key}='{value}'" if isinstance(value, str) and "'" not in value else None


def extension(row: Row, rows: dict[str, Row], folder: Path) -> list[str] | None:
    """The ``trainer.*`` overrides that continue the completed run in ``folder`` when its row's config
    now differs from the run's only in how long it trains (a raised max_epochs); None when nothing
    is to be added, or when other settings changed too (the result is then stale, not continued)."""
    recorded = _recorded_hash(folder)
    config = RunFolder(folder).config
    if recorded is None or not config.exists():
        return None
    ran = (yaml.safe_load(config.read_text()) or {}).get("trainer") or {}
    wanted = resolved_config(list(row.train_overrides()))["trainer"]
    changed = [key for key in TRAINING_LENGTH if wanted.get(key) != ran.get(key)]
    as_ran = [_override(f"trainer.{key}", ran.get(key)) for key in changed]
    more = [_override(f"trainer.{key}", wanted.get(key)) for key in changed]
    if not changed or None in as_ran or None in more or row_hash(row, rows, tuple(as_ran)) != recorded:
        return None
    return more


def _run_session(args: list[str], folder: Path, digest: str, poll_s: float) -> int:
    """One dgm-train invocation, watched by progress.watch; recorded in reproduce.json."""
    folder.mkdir(parents=True, exist_ok=True)
    session = progress.next_session(folder)
    commit = provenance.git_commit(REPO)  # the code this session runs, before anyone edits the tree
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "dgm_lab.train", *args], cwd=REPO)
    watcher = threading.Thread(target=progress.watch, args=(folder, lambda: process.poll() is None, session),
                               kwargs={"interval_s": poll_s}, daemon=True)
    watcher.start()
    try:
        returncode = process.wait()
    except BaseException:  # Ctrl-C or SIGTERM: stop dgm-train too (its checkpoints stay; --resume continues)
        process.terminate()
        process.wait()
        raise
    finally:
        watcher.join(timeout=60)
        record = {"session": session, "command": display_command(args), "started": round(started, 1),
                  "wall_s": round(time.time() - started, 1), "returncode": process.returncode,
                  "config_hash": digest, "git_commit": commit, "hardware": provenance.hardware()}
        text = json.dumps([*_sessions(folder), record], indent=2)
        write_atomically(folder / SESSIONS, lambda temporary: temporary.write_text(text))
    return returncode


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run_row(row: Row, runs_dir: Path, results_dir: Path, quick: bool = False, resume: bool = False,
            poll_s: float = 20.0, rows: dict[str, Row] | None = None) -> Path:
    """Run (or continue) every seed of ``row``, then write and return its result file. A row run
    ``after`` another (``rows``: the registry) first completes that row (run, continued, or kept
    when its run has completed) and trains on its first seed's run folder."""
    rows = rows or {row.name: row}
    for before in reversed(upstream_rows(rows, row)):
        check_runnable(before)
    check_runnable(row)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `kill <pid>` stops the dgm-train it runs as well
    digest = row_hash(row, rows)  # also: the rows compose, before any long run starts
    upstream = None
    if row.after is not None:
        before = rows[row.after[0]]
        print(f"[dgm-reproduce] {row.name} runs after {before.name}: that row first", flush=True)
        run_row(before, runs_dir, results_dir, quick=quick, resume=True, poll_s=poll_s, rows=rows)
        upstream = run_folder(before, runs_dir, before.seeds[0], quick)
    for seed in seeds_of(row, quick):
        folder = run_folder(row, runs_dir, seed, quick)
        summary = RunFolder(folder).read_summary()
        session_digest = digest
        if resume and summary is not None and summary.status == "completed":
            longer = None if quick else extension(row, rows, folder)
            if longer is None:
                continue
            print(f"[dgm-reproduce] {row.name}: the row now trains longer than {folder} did; continuing it with "
                  f"{' '.join(longer)}", flush=True)
            args = [f"resume={folder}", *longer]
        elif resume and RunFolder(folder).config.exists():
            args = [f"resume={folder}"]
            session_digest = _recorded_hash(folder) or digest  # a resume trains the run's own config, not an edited one
        elif RunFolder(folder).is_run() and not quick:
            raise UserError(f"{folder} already holds a run of {row.name!r}: continue it with --resume, or move it away "
                            "to start over.")
        else:
            if quick and folder.exists():  # quick runs are scratch: each starts clean
                shutil.rmtree(folder)
            args = [*row.command(seed, quick, upstream), f"hydra.run.dir={folder}"]
        returncode = _run_session(args, folder, session_digest, poll_s)
        if returncode:
            raise UserError(f"dgm-train exited with status {returncode} for {row.name!r} seed {seed}; its output is "
                            f"above and its run folder is {folder} (continue it with --resume).")
    return write_result(row, runs_dir, results_dir, quick, digest)


def _wall_s(session: dict, folder: Path) -> float:
    """A session's wall time; one started by hand (no wall_s) counts to its last recorded epoch."""
    if session.get("wall_s") is not None:
        return session["wall_s"]
    return max((line["elapsed_s"] for line in progress.read_progress(folder)
                if line.get("session") == session.get("session")), default=0.0)


def _commits(sessions: list[dict]) -> dict:
    """``git_commit``: the commit the row's first session started from (a long row outlives edits
    to the tree, so the commit at its end would claim code it did not run); ``git_commits`` too
    when a continued row ran on more than one. Sessions recorded before this field: the commit now."""
    commits = list(dict.fromkeys(s.get("git_commit") or UNRECORDED for s in sessions))
    recorded = [c for c in commits if c != UNRECORDED]
    if not recorded:
        return {"git_commit": provenance.git_commit(REPO)}
    # a row continued past a session from before the field: the first commit known, and the list
    # says an earlier session's is not
    return {"git_commit": recorded[0], **({"git_commits": commits} if len(commits) > 1 else {})}


def write_result(row: Row, runs_dir: Path, results_dir: Path, quick: bool, digest: str) -> Path:
    """``digest``: the row's config hash now; the hash its run last trained under wins (a continued
    session records the run's own hash, a lengthened one the row's), so a result never claims a
    config its run did not use."""
    per_seed, sessions, folders = {}, [], []
    for seed in seeds_of(row, quick):
        folder = run_folder(row, runs_dir, seed, quick)
        summary = RunFolder(folder).read_summary()
        if summary is None or summary.status != "completed":
            raise UserError(f"{folder} has no completed run; continue it with dgm-reproduce {row.name} --resume.")
        per_seed[str(seed)] = summary.metrics
        sessions.extend({**s, "wall_s": _wall_s(s, folder)} for s in _sessions(folder))
        folders.append(str(folder))
    keys = sorted(set.intersection(*(set(m) for m in per_seed.values())))
    mean = {k: statistics.fmean(m[k] for m in per_seed.values()) for k in keys}
    minimum = {k: min(m[k] for m in per_seed.values()) for k in keys}
    missing = [t.metric for t in row.targets if t.metric not in mean]
    if missing and not quick:  # a smoke test may leave out what needs absent weights (Inception scores)
        raise UserError(f"the runs of {row.name!r} report no {', '.join(missing)}; check the row's metric key "
                        f"against {folders[0]}/summary.json.")
    first = run_folder(row, runs_dir, row.seeds[0], quick)
    # The curve of the row's own metric where validation reports it (val/error of a semi-supervised
    # row), else the validation bound: what the reader of a long row wants to see converge.
    own_key = row.target.metric.replace("test/", "val/", 1)
    curve_key = next((key for key in (own_key, "val/elbo") if key in mean), None)
    result = {
        "row": row.name, "quick": quick, "config_hash": _last_hash(sessions) or digest,
        "experiment": row.experiment,
        "value": mean.get(row.target.metric), "missing_metrics": missing, "metrics_mean": mean, "metrics_min": minimum, "metrics": per_seed,
        "targets": [{"metric": t.metric, "published": t.published, "direction": t.direction,
                     "tolerance": t.tolerance} for t in row.targets],
        "protocol": list(row.protocol), "seeds": list(seeds_of(row, quick)),
        "wall_time_s": round(sum(s["wall_s"] for s in sessions), 1),
        "hardware": sessions[-1]["hardware"] if sessions else provenance.hardware(),
        **_commits(sessions), "package_version": provenance.package_version(),
        "commands": [s["command"] for s in sessions], "command": f"dgm-reproduce {row.name}" + (" --quick" if quick else ""),
        "run_folders": folders, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if curve_key:
        result["curve"] = {"metric": curve_key, "seed": row.seeds[0], "points": progress.curve(first, curve_key)}
    path = result_path(row, results_dir, quick)
    text = json.dumps(result, indent=2, sort_keys=False)
    write_atomically(path, lambda temporary: temporary.write_text(text + "\n"))
    return path
