"""Package discovery, which pyproject.toml cannot express: the configs live at the repository root
(``conf/``, what users read and edit) and are installed inside the package as ``dgm_lab/conf``,
where ``dgm_lab.config.CONF_DIR`` finds them when dgm-lab runs from a wheel."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

# Data-only folders (config groups, weights) are namespace packages, so their files are installed.
config_packages = ["dgm_lab.conf", *(f"dgm_lab.conf.{'.'.join(folder.relative_to('conf').parts)}"
                                     for folder in sorted(Path("conf").rglob("*")) if folder.is_dir())]

setup(
    packages=[*find_namespace_packages(include=["dgm_lab", "dgm_lab.*"], exclude=["*.__pycache__"]), *config_packages],
    package_dir={"dgm_lab.conf": "conf"},
)
