"""Shared entry-point behaviour: a Hydra app on conf/<name>.yaml, and user errors as one sentence
on stderr with a non-zero exit."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from dgm_lab import help
from dgm_lab.config import CONF_DIR, register_resolvers, run_dir
from dgm_lab.errors import DivergedError, Interrupted, UserError
from dgm_lab.interrupts import EvaluationInterrupted
from dgm_lab.settings import not_a_path

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


def reports_user_errors(prog: str):
    """Decorator for Hydra task functions: print our errors as one line instead of a traceback."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as error:
                _fail(prog, str(error), EXIT_USER_ERROR)
            except MissingMandatoryValue as error:  # a ??? the command line did not fill (data=npz without data.path)
                key = error.full_key or "?"
                _fail(prog, f"setting {key} needs a value: give {key}=... on the command line.", EXIT_USER_ERROR)
            except InterpolationResolutionError as error:  # ${oc.env:UNSET} and the like, met while reading a setting
                ours = _user_error_in(error)  # a resolver of ours that explains itself (${dgm_required:...})
                cause = str(error).splitlines()[0]
                _fail(prog, str(ours) if ours else f"setting {error.full_key or '?'} could not be resolved ({cause}); "
                      "fix or remove it.", EXIT_USER_ERROR)
            except DivergedError as error:
                _fail(prog, f"training diverged: {error}", EXIT_DIVERGED)
            except EvaluationInterrupted as error:  # nothing to close: exit at once
                _stop(prog, str(error), error.exit_code)
            except Interrupted as error:  # preempted: 128 + signal number, as a shell reports a killed job
                _fail(prog, str(error), error.exit_code)

        return run

    return wrap


def _user_error_in(error: BaseException) -> UserError | None:
    """The UserError an exception was raised from, if any (its __cause__/__context__ chain)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _fail(prog: str, message: str, code: int):
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    if os.environ.get("DGM_RAISE"):  # tests and debugging: keep the exception
        raise
    sys.exit(code)


class _DropLine(logging.Filter):
    """Drops log records whose message contains ``text`` (advertisements, not information)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_third_party_logs() -> None:
    """Lines other libraries print on every run that tell the user nothing: Lightning's litlogger
    advertisement (from every Trainer) and alembic's database-migration chatter (Optuna trials)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropLine("litlogger"))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates, on every Trainer
    warnings.filterwarnings("ignore", ".*LeafSpec.*")


def _stop(prog: str, message: str, code: int):
    """The sentence, then exit at once: the interrupted command wrote nothing that needs closing,
    and a normal interpreter shutdown (torch, Lightning, tqdm's threads) takes seconds on a busy machine."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if os.environ.get("DGM_RAISE"):
        raise
    os._exit(code)


def unwritable_output(args: list[str]) -> str | None:
    """Why the folder of a ``hydra.run.dir=``/``hydra.sweep.dir=`` override cannot be written, or None.
    Checked before Hydra, which would create it and report a failure with a traceback."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "$" in value:
            continue
        existing = Path(value).expanduser().absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return f"cannot create the output folder {value}: {existing} is a file; choose another {key}."
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"cannot write the output folder {value}: {existing} is not writable; choose another {key}."
    return None


# What Hydra's override parser reads as a number, bool or null rather than a string.
NOT_A_STRING = r"[-+]?(\d[\d_]*\.?\d*(e[-+]?\d+)?|\.\d+|inf|nan)|true|false"
# Paths that Hydra resolves into the run folder before any task runs (``resume=-1`` would stop
# inside pathlib with a traceback, or name a folder "-1").
PATH_KEYS = ("resume", "ckpt_path")


def numeric_path(args: list[str]) -> str | None:
    """A path setting given a value Hydra parses as a number or bool: one sentence, before Hydra."""
    import re

    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") in PATH_KEYS and re.fullmatch(NOT_A_STRING, value.strip(), re.IGNORECASE):
            return not_a_path(key.lstrip("+"), value)
    return None


def non_option_group_choice(args: list[str]) -> str | None:
    """A config-group override whose value Hydra parses as a number, bool or null (``metrics=3``):
    Hydra stops on it with a traceback, so it is answered here with the group's options."""
    import re

    groups = None  # the conf/ tree is walked only when a group-like key has such a value
    for arg in args:
        key, _, value = arg.partition("=")
        group = key.lstrip("+~")
        if "." in group or not re.fullmatch(f"{NOT_A_STRING}|null", value.strip(), re.IGNORECASE):
            continue
        groups = help.config_groups(CONF_DIR) if groups is None else groups
        if group in groups:
            return f"{arg}: {group} takes one of {', '.join(groups[group])}, not {value!r}."
    return None


def hydra_main(config_name: str, task) -> None:
    """Run ``task`` (a function of the composed config) as the Hydra app of ``conf/<config_name>.yaml``;
    ``--help`` prints the entry point's docstring, the option groups and the composed config."""
    register_resolvers()
    run_dir.cache_clear()  # one folder per command, also for a second command in the same process
    if help.wants_help(sys.argv):
        usage = sys.modules[task.__module__].__doc__ or config_name
        overrides = [arg for arg in sys.argv[1:] if arg not in help.HELP_FLAGS]
        try:
            text = help.help_text(config_name, CONF_DIR, usage, overrides)
        except HydraException as error:  # a bad override next to --help: Hydra's sentence, no traceback
            _fail(f"dgm-{config_name}", " ".join(str(error).split()), EXIT_USER_ERROR)
        sys.stdout.write(text)
        return
    quiet_third_party_logs()
    problem = unwritable_output(sys.argv[1:]) or numeric_path(sys.argv[1:]) or non_option_group_choice(sys.argv[1:])
    if problem:
        _fail(f"dgm-{config_name}", problem, EXIT_USER_ERROR)
    started = []

    @functools.wraps(task)
    def marked(cfg):
        started.append(True)
        return task(cfg)

    try:
        hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(marked)()
    except SystemExit as exit:
        # Hydra exits 1 after printing its message for a bad override or config name, before the
        # task starts: a usage error, so the usage exit code (a crash inside the task stays 1).
        if exit.code == 1 and not started:
            sys.exit(EXIT_USER_ERROR)
        raise
