"""The model schemas in Hydra's ConfigStore, and the check of a composed model config.

``register_model_schemas()`` (called by ``dgm_lab.config.register_resolvers``, so dgm-train and
the tests' ``hydra.compose`` both see them) stores, for every model family, its class, the
wiring each model gets from the run (shapes from the datamodule, optimizer, scheduler, eval
settings) and its settings' defaults as ``model/schema/<name>``: the first entry of each model
YAML's defaults list. The stored nodes are untyped on purpose: a value of the wrong type
(``model.latent_dim=abc``) must reach the settings dataclass and its one sentence instead of
failing inside Hydra's composition with a stack of OmegaConf messages.
"""

from __future__ import annotations

import dataclasses

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from dgm_lab.models.settings import ModelSchema

# What every model receives from the run besides its own settings.
WIRING = {
    "data_shape": MISSING,  # filled from the datamodule
    "num_classes": MISSING,  # filled from the datamodule
    "optimizer": "${optimizer}",
    "scheduler": "${oc.select:scheduler,null}",
}
EVALUATION_WIRING = {"evaluation": "${eval}"}  # models whose test metrics read the eval block


def schema_node(schema: ModelSchema) -> dict:
    """The ConfigStore node of a model: its class, the run's wiring and its settings' defaults."""
    wiring = {**WIRING, **(EVALUATION_WIRING if schema.reads_eval else {})}
    return {"_target_": schema.target, **wiring, **defaults(schema.settings)}


def defaults(settings_class: type) -> dict:
    """A settings dataclass's defaults as plain values, without building an instance: its checks
    may need torch (the GAN's loss table), and composing a config (``dgm-train --help``) must not."""
    out = {}
    for field in dataclasses.fields(settings_class):
        value = field.default_factory() if field.default is dataclasses.MISSING else field.default
        out[field.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def model_schemas() -> dict[str, ModelSchema]:
    """{name: schema} of every model family."""
    # Imported here, when the schemas are needed: the families' modules need torch, this one does not.
    from dgm_lab.models.boltzmann.config import SCHEMAS as BOLTZMANN
    from dgm_lab.models.gan.config import SCHEMAS as GAN
    from dgm_lab.models.vae.config import SCHEMAS as VAE

    return {**VAE, **GAN, **BOLTZMANN}


def register_model_schemas() -> None:
    """Store ``model/schema/<name>`` for every model family in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(group="model/schema", name="wiring", node=dict(WIRING))  # for a model without a family schema
    for name, schema in model_schemas().items():
        store.store(group="model/schema", name=name, node=schema_node(schema))


def check_model_config(model_cfg: DictConfig) -> None:
    """Check a composed ``model`` config's settings before anything is built (one sentence on the
    first bad value) with the dataclass its constructor uses."""
    settings = getattr(hydra.utils.get_class(model_cfg._target_), "settings_class", None)
    if settings is None:  # a model from outside dgm-lab without declared settings
        return
    values = {}
    for field in dataclasses.fields(settings):
        if field.name in model_cfg:
            value = OmegaConf.select(model_cfg, field.name)
            values[field.name] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    settings(**values)
