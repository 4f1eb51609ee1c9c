"""A run folder or a checkpoint from someone else cannot run code: hostile saved configs are
refused by every entry point before anything is built (``dgm_lab.safe_config``).

One tiny run is trained once; each case copies it and writes one attack into its
``config.yaml`` and into the config stored in its checkpoints (and a lone ``.ckpt`` beside
it). Every attack is first shown to be live (building the saved config without the check
creates its marker file); then each entry point refuses it with one sentence and exit code 2,
and the marker does not exist. The entry points run in-process through their Hydra ``main()``
(the code the console scripts call; a subprocess costs ~25 s of imports here), plus a few
through real subprocesses.
"""

from __future__ import annotations

import os
import pickle
import shutil
import uuid
from pathlib import Path

import hydra
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from dgm_lab import builders
from dgm_lab.errors import ConfigError
from dgm_lab.safe_config import conf_targets, trusted_config
from tests.conftest import FAST, REPO, run_cli, train_run
from tests.inprocess import main_in_process, snapshot

LIKELIHOOD = "dgm_lab.models.vae.Bernoulli"  # what model.likelihood builds in the trained run


class _Payload:
    """A pickle that creates a folder when it is loaded: what a hostile pickle would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _node(kind: str, case: Path, marker: Path, module: str) -> dict:
    """The hostile node for ``model.likelihood`` of attack ``kind``."""
    pickled = str(case / "payload.pkl")
    path_of = lambda p: {"_target_": "pathlib.Path", "_args_": [str(p)]}  # noqa: E731
    return {
        "torch_load": {"_target_": "torch.load", "f": pickled, "weights_only": False},
        "path_write_text": {"_target_": "pathlib.Path.write_text", "_args_": [path_of(marker), "pwned"]},
        "builtins_open": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
        "shutil_copyfile": {"_target_": "shutil.copyfile", "src": pickled, "dst": str(marker)},
        "os_makedirs": {"_target_": "os.makedirs", "name": str(marker)},
        "numpy_load": {"_target_": "numpy.load", "file": pickled, "allow_pickle": True},
        "torch_hub_load": {"_target_": "torch.hub.load", "repo_or_dir": str(case / "hub"), "model": "entry",
                           "source": "local"},
        "hydra_instantiate": {"_target_": "hydra.utils.instantiate", "_recursive_": False,
                              "config": {"_target_": "os.makedirs", "name": str(marker)}},
        "hydra_get_method": {"_target_": "hydra.utils.get_method", "path": f"{module}.entry"},
        "importlib_import_module": {"_target_": "importlib.import_module", "name": module},
        "pickle_loads": {"_target_": "pickle.loads", "_args_": [
            {"_target_": "pathlib.Path.read_bytes", "_args_": [path_of(pickled)]}]},
        "os_system": {"_target_": "os.system", "command": f"mkdir {marker}"},
        "subprocess_run": {"_target_": "subprocess.run", "args": ["mkdir", str(marker)]},
        # An allowed class whose _args_ smuggle a loader in: refused on the _args_ conf/ never uses.
        "args_on_allowed": {"_target_": LIKELIHOOD, "_args_": [
            {"_target_": "torch.load", "f": pickled, "weights_only": False}]},
        # An interpolation that becomes a node only when resolved: checked after resolution.
        "interpolation": "${oc.create:'{_target_: os.makedirs, name: " + str(marker) + "}'}",
    }[kind]


# attack -> the part of the one-sentence refusal that names it (after "<file> ")
ATTACKS = {
    "torch_load": "asks to build torch.load (at model.likelihood)",
    "path_write_text": "asks to build pathlib.Path.write_text (at model.likelihood)",
    "builtins_open": "asks to build builtins.open (at model.likelihood)",
    "shutil_copyfile": "asks to build shutil.copyfile (at model.likelihood)",
    "os_makedirs": "asks to build os.makedirs (at model.likelihood)",
    "numpy_load": "asks to build numpy.load (at model.likelihood)",
    "torch_hub_load": "asks to build torch.hub.load (at model.likelihood)",
    "hydra_instantiate": "asks to build hydra.utils.instantiate (at model.likelihood)",
    "hydra_get_method": "asks to build hydra.utils.get_method (at model.likelihood)",
    "importlib_import_module": "asks to build importlib.import_module (at model.likelihood)",
    "pickle_loads": "asks to build pickle.loads (at model.likelihood)",
    "os_system": "asks to build os.system (at model.likelihood)",
    "subprocess_run": "asks to build subprocess.run (at model.likelihood)",
    "args_on_allowed": "sets _args_: ",
    "interpolation": "asks to build os.makedirs (at model.likelihood)",
}
# Targets that Hydra 1.3.8's own target policy already refuses (multi-line, from inside instantiate).
BLOCKED_BY_HYDRA = {"importlib_import_module", "pickle_loads", "os_system", "subprocess_run"}
# Tricks with no file side effect of their own: refused all the same.
TRICKS = {
    "partial_on_allowed": (lambda cfg: cfg["model"]["likelihood"].update(_partial_=True),
                           f"sets _partial_: True on {LIKELIHOOD} (at model.likelihood)"),
    "recursive_off": (lambda cfg: cfg["model"].update(_recursive_=False), "sets _recursive_: False on "),
    "convert_on_optimizer": (lambda cfg: cfg["optimizer"].update(_convert_="object"), "sets _convert_: 'object' on "),
    "weights_only_false": (lambda cfg: cfg["data"].update(weights_only=False),
                           "sets weights_only: False, which lets a loader run code from a file (at data.weights_only)"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny VAE run (digits, one epoch): its folder holds config.yaml, best and last checkpoints."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train_run(run, "test=false", "callbacks.image_samples.every_n_epochs=0")
    return run


def _plant(case: Path, module: str, marker: Path) -> None:
    """The files the attacks use: a pickle, a torch.hub repository and an importable module."""
    case.mkdir(parents=True, exist_ok=True)
    (case / "payload.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))
    (case / "hub").mkdir()
    (case / "hub" / "hubconf.py").write_text(f"import os\nos.makedirs({str(marker)!r})\ndef entry():\n    return None\n")
    (case / f"{module}.py").write_text(f"import os\nos.makedirs({str(marker)!r})\ndef entry():\n    return None\n")


def _hostile(trained: Path, case: Path, mutate) -> dict:
    """Copy ``trained`` to ``case/run`` with ``mutate`` applied to its config.yaml and to the config
    inside each checkpoint; also write ``case/lone.ckpt``. Returns the mutated config."""
    run = case / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("samples"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    mutate(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    for path in (run / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["dgm_config"] = cfg
        torch.save(checkpoint, path)
    shutil.copy(run / "checkpoints" / "last.ckpt", case / "lone.ckpt")
    return cfg


def _case(trained: Path, tmp_path: Path, attack: str, monkeypatch):
    module = f"dgm_payload_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "pwned"
    _plant(tmp_path, module, marker)
    monkeypatch.syspath_prepend(str(tmp_path))  # the payload module is importable: the attack is live
    if attack in ATTACKS:
        node = _node(attack, tmp_path, marker, module)
        mutate = lambda cfg: cfg["model"].update(likelihood=node)  # noqa: E731
        expected = ATTACKS[attack]
    else:
        mutate, expected = TRICKS[attack]
    cfg = _hostile(trained, tmp_path, mutate)
    return cfg, marker, expected


# entry point -> (command-line arguments, the file the refusal names), from the case folder
# checkpoints are numbered from epoch 1, like the sample grids
ENTRY_POINTS = {
    "dgm-eval run folder": ("dgm-eval", lambda c: [f"ckpt_path={c / 'run'}", "progress_bar=false"],
                            lambda c: f"checkpoint {c / 'run' / 'checkpoints' / 'best-epoch001.ckpt'}"),
    "dgm-eval lone ckpt": ("dgm-eval", lambda c: [f"ckpt_path={c / 'lone.ckpt'}", "progress_bar=false"],
                           lambda c: f"checkpoint {c / 'lone.ckpt'}"),
    "dgm-sample run folder": ("dgm-sample", lambda c: [f"ckpt_path={c / 'run'}"],
                              lambda c: f"checkpoint {c / 'run' / 'checkpoints' / 'best-epoch001.ckpt'}"),
    "dgm-sample lone ckpt": ("dgm-sample", lambda c: [f"ckpt_path={c / 'lone.ckpt'}"],
                             lambda c: f"checkpoint {c / 'lone.ckpt'}"),
    "dgm-train resume=": ("dgm-train", lambda c: [f"resume={c / 'run'}", "trainer.max_epochs=2"],
                          lambda c: str(c / "run" / "config.yaml")),
    "dgm-train ckpt_path=": ("dgm-train", lambda c: [*FAST, f"ckpt_path={c / 'lone.ckpt'}", f"hydra.run.dir={c / 'new'}"],
                             lambda c: f"checkpoint {c / 'lone.ckpt'}"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_live_without_the_check(trained, tmp_path, attack, monkeypatch):
    """Building the hostile saved config as dgm-eval would, but without the check, runs the payload,
    or (for the targets Hydra's own policy blocklists) fails with Hydra's multi-line error: so
    the one-sentence refusals below are what stops the rest."""
    cfg, marker, _ = _case(trained, tmp_path, attack, monkeypatch)
    error = None
    try:
        builders.build_model(OmegaConf.create(cfg))
    except Exception as raised:  # the model may break after the payload has run; the marker tells
        error = raised
    if attack in BLOCKED_BY_HYDRA:
        assert not marker.exists() and "blocklisted" in str(error.__cause__ or error), error
    else:
        assert marker.exists(), f"{attack} did not run its payload ({error})"


def _matrix() -> list:
    """Every attack through every entry point; by default each attack through one of them in turn
    (every entry point gets three or more), the whole matrix with ``-m slow``."""
    entries, cases = list(ENTRY_POINTS), []
    for index, attack in enumerate([*ATTACKS, *TRICKS]):
        for entry in entries:
            slow = entry != entries[index % len(entries)]
            cases.append(pytest.param(attack, entry, marks=[pytest.mark.slow] if slow else []))
    return cases


@pytest.mark.parametrize(("attack", "entry"), _matrix())
def test_hostile_saved_config_is_refused_before_anything_runs(trained, tmp_path, attack, entry, monkeypatch):
    _, marker, expected = _case(trained, tmp_path, attack, monkeypatch)
    prog, args, source = ENTRY_POINTS[entry]
    before = snapshot(tmp_path / "run")
    code, _, err = main_in_process(prog, *args(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: {source(tmp_path)} {expected}"), err
    assert "so nothing was built" in lines[0] and ("allow_targets=[" in lines[0] or "remove it" in lines[0])
    assert not marker.exists(), f"{attack} ran through {entry}"
    assert snapshot(tmp_path / "run", skip=(".hydra",)) == {k: v for k, v in before.items() if not k.startswith(".hydra")}
    assert not (tmp_path / "new" / "summary.json").exists() and not (tmp_path / "new" / "config.yaml").exists()


def test_allow_targets_on_the_command_line_lets_a_trusted_class_through(trained, tmp_path, monkeypatch):
    """A class of the user's own package, named with allow_targets=, is built; the file cannot
    allow it for itself (its own allow_targets key is ignored)."""
    module = f"dgm_user_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("from dgm_lab.models.vae import Bernoulli\n\nclass Mine(Bernoulli):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def mutate(cfg):
        cfg["model"]["likelihood"] = {"_target_": f"{module}.Mine"}
        cfg["allow_targets"] = [f"{module}.Mine"]  # written into the file: must not count

    _hostile(trained, tmp_path, mutate)
    lone = tmp_path / "lone.ckpt"
    code, _, err = main_in_process("dgm-sample", f"ckpt_path={lone}", f"output={tmp_path / 's.npz'}")
    assert code == 2 and f"allow_targets=[{module}.Mine]" in err, err
    code, _, err = main_in_process("dgm-sample", f"ckpt_path={lone}", f"output={tmp_path / 's.npz'}", f"allow_targets=[{module}.Mine]")
    assert code == 0, err
    assert (tmp_path / "s.npz").exists()


def test_allowlist_is_exactly_the_targets_of_conf_and_the_schemas():
    """Every _target_ of conf/ and of the model schemas is allowed, and nothing else but the
    moved class paths of earlier versions (each of which still imports)."""
    from dgm_lab.models.moved import MOVED_TARGETS
    from dgm_lab.models.schemas import model_schemas

    in_conf = set()
    for path in (REPO / "conf").rglob("*.yaml"):
        text = path.read_text()
        in_conf.update(value.split("#")[0].strip().rstrip("}").strip() for line in text.splitlines()
                       for value in line.split("_target_:")[1:])
    schemas = {schema.target for schema in model_schemas().values()}
    allowed = set(conf_targets())
    assert in_conf and in_conf <= allowed and schemas <= allowed
    assert allowed == in_conf | schemas | set(MOVED_TARGETS.values())
    for target in allowed:
        assert hydra.utils.get_object(target) is not None, target
    assert not {"torch.load", "os.system", "builtins.open", "hydra.utils.instantiate"} & allowed


def test_every_config_of_conf_passes_the_check(compose_train):
    """The resolved config of every model (and an experiment) is trusted as saved."""
    models = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))
    for overrides in [[f"model={m}"] for m in models] + [["experiment=vae_mnist"], ["scheduler=cosine", "logger=tensorboard"]]:
        cfg = compose_train(overrides)
        cfg.model.data_shape, cfg.model.num_classes = [1, 28, 28], 10  # filled from the data before saving
        trusted_config(OmegaConf.to_container(cfg, resolve=False), "test", None)


def test_refusal_names_the_deepest_path_and_a_non_string_target():
    with pytest.raises(ConfigError, match=r"^f asks to build os\.system \(at model\.encoder\.hidden\[1\]\)"):
        trusted_config({"model": {"_target_": "dgm_lab.models.vae.VAE", "encoder": {
            "_target_": "dgm_lab.models.networks.MLP", "_partial_": True, "hidden": [8, {"_target_": "os.system"}]}}}, "f", None)
    with pytest.raises(ConfigError, match="has a _target_ that is not a class path"):
        trusted_config({"model": {"_target_": 3}}, "f", None)


@pytest.mark.parametrize(("entry", "attack"), [("dgm-sample lone ckpt", "torch_load"),
                                               ("dgm-train resume=", "path_write_text")])
def test_hostile_config_through_the_console_script(trained, tmp_path, entry, attack, monkeypatch):
    _cli_case(trained, tmp_path, entry, attack, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_config_matrix_through_the_console_scripts(trained, tmp_path, entry, attack, monkeypatch):
    _cli_case(trained, tmp_path, entry, attack, monkeypatch)


def _cli_case(trained, tmp_path, entry, attack, monkeypatch):
    _, marker, expected = _case(trained, tmp_path, attack, monkeypatch)
    prog, args, source = ENTRY_POINTS[entry]
    result = run_cli(prog, *args(tmp_path), env={"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}, fresh_process=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].startswith(f"{prog}: error: {source(tmp_path)} {expected}") and "Traceback" not in result.stderr
    assert not marker.exists()



@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_pickle_as_checkpoint_is_refused_by_weights_only(trained, tmp_path, entry):
    """Every checkpoint is loaded with weights_only=True: a checkpoint file that is a pickle with a
    payload (here: every .ckpt of the run folder, and the lone one) is refused unread."""
    marker = tmp_path / "pwned"
    shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("samples"))
    payload = pickle.dumps({"state_dict": {}, "dgm_config": {}, "payload": _Payload(str(marker))})
    for path in [*(tmp_path / "run" / "checkpoints").glob("*.ckpt"), tmp_path / "lone.ckpt"]:
        path.write_bytes(payload)
    prog, args, _ = ENTRY_POINTS[entry]
    code, _, err = main_in_process(prog, *args(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "could not be read with weights_only=True" in err and "not a dgm-lab checkpoint" in err, err
    assert not marker.exists()
