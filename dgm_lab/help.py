"""``--help`` of the entry points, answered from the config files with one composition.

Hydra's own ``--help`` lists the option groups by deep-copying its whole config repository once per
group and option kind (about 130 copies for conf/train.yaml: 1.5 to 2.5 s of CPU, most of the cost
of ``dgm-train --help``). This prints the same sections (the groups and their options, then the
composed config, with any overrides given) from one ``hydra.compose``, without importing torch.
``--hydra-help`` stays Hydra's.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

HELP_FLAGS = ("--help", "-h")


def wants_help(argv: list[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv[1:])


def config_groups(conf_dir: str) -> dict[str, list[str]]:
    """{group path: sorted option names} of the YAML files under ``conf_dir`` (Hydra's own ``hydra/``
    groups left out, as Hydra's help leaves them to ``--hydra-help``)."""
    root = Path(conf_dir)
    groups = {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        group = folder.relative_to(root).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options and group.split("/")[0] != "hydra":
            groups[group] = options
    return groups


def used_groups(config_name: str, conf_dir: str) -> set[str]:
    """The groups the entry point's own defaults list names (``dgm-sample`` names none, so its help
    lists no training groups)."""
    import yaml

    defaults = yaml.safe_load((Path(conf_dir) / f"{config_name}.yaml").read_text()).get("defaults") or []
    names = {str(next(iter(entry))).split("@")[0].removeprefix("optional ").removeprefix("override ")
             for entry in defaults if isinstance(entry, dict)}
    return {name for name in names if not name.startswith("hydra")}


def help_text(config_name: str, conf_dir: str, usage: str, overrides: list[str]) -> str:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
    used = used_groups(config_name, conf_dir)
    groups = "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups(conf_dir).items()
                       if group.split("/")[0] in used)
    listing = (f"== Configuration groups ==\nCompose your configuration from those groups (group=option)\n\n"
               f"{groups}\n\n\n") if groups else ""
    return (f"{usage.strip()}\n\n{listing}== Config ==\nOverride anything in the config (foo.bar=value)\n\n"
            f"{OmegaConf.to_yaml(cfg)}\n\nUse --hydra-help to view Hydra specific help\n")
