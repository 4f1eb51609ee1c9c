"""Settings of the Boltzmann family (``model=rbm|dbn|dbm``)."""

from __future__ import annotations

from dataclasses import dataclass

from dgm_lab.errors import require
from dgm_lab.models.settings import ModelSchema, ModelSettings, setting


@dataclass
class BoltzmannConfig(ModelSettings):
    """What RBM, DBN and DBM share."""

    sample_gibbs_steps: int = setting(1000, minimum=1)  # Gibbs sweeps per sample() chain (grids, dgm-sample)
    monitor_examples: int = setting(500, minimum=1)  # fixed train/val subsets of the epoch monitors
    # null, or one LR factor per training stage (DBN: per layer; DBM: bottom RBM, top RBM, joint);
    # every stage restarts momentum and the scheduler (a cosine decays over the stage's epochs).
    stage_lr_scale: list[float] | None = None


@dataclass
class RBMConfig(BoltzmannConfig):
    num_hidden: int = setting(500, minimum=1)  # H, binary hidden units
    # bernoulli | gaussian (continuous data: pixels standardized, unit variance; set
    # monitor.metric=val/recon_error monitor.mode=min, there is no pseudo-likelihood)
    visible: str = "bernoulli"
    cd_k: int = setting(1, minimum=1)  # Gibbs sweeps per update (persistent: sweeps the chains advance)
    persistent: bool = False  # persistent CD (Tieleman 2008); the chains are saved in the checkpoint
    num_chains: int = 100  # persistent fantasy particles
    init_std: float = 0.01  # initial weight std (Hinton's practical guide)

    def check(self) -> None:
        require(self.num_chains >= 1 or not self.persistent,
                f"model.num_chains must be >= 1 with persistent CD, got {self.num_chains}.")


@dataclass
class DBNConfig(BoltzmannConfig):
    layers: list[int] = setting([500, 2000])  # hidden layer sizes, bottom to top
    epochs_per_layer: int = setting(10, minimum=1)  # layer l trains in epochs [l*n, (l+1)*n); the top one to the end
    cd_k: int = setting(1, minimum=1)  # CD-k of every layer (persistent: chain sweeps per update)
    persistent: bool = False
    num_chains: int = 100
    init_std: float = 0.01
    upward: str = setting("sample", choices=("sample", "mean"))  # binary states or probabilities feed the layer above
    bound_samples: int = setting(10, minimum=1)  # draws of q(h | v) per test example for the bound
    # true: an upper RBM starts as the prior the RBM below implies (needs H_l >= its input size),
    # so the bound starts at that RBM's log-likelihood; experiment=rbm_dbn_mnist uses it
    init_from_below: bool = False

    def check(self) -> None:
        require(len(self.layers) >= 1 and min(self.layers) >= 1,
                f"model.layers must list positive layer sizes, got {list(self.layers)}.")


@dataclass
class DBMConfig(BoltzmannConfig):
    layers: list[int] = setting([500, 1000])  # [H1, H2]
    pretrain_epochs_per_layer: int = setting(10, minimum=0)  # bottom RBM, then top RBM; joint training after
    pretrain_cd_k: int = setting(1, minimum=1)
    cd_k: int = setting(1, minimum=1)  # Gibbs sweeps of the persistent chains per joint update
    num_chains: int = setting(100, minimum=1)  # persistent chains (v, h2), saved in the checkpoint
    # data | noise: where the persistent chains start (noise: the batch's pixel means, uniform h2)
    chain_init: str = setting("data", choices=("data", "noise"))
    mean_field_steps: int = setting(10, minimum=0)  # fixed-point sweeps per example while training
    mean_field_eval_steps: int = setting(50, minimum=0)  # ... for the test bound
    init_std: float = 0.01

    def check(self) -> None:
        require(len(self.layers) == 2 and min(self.layers) >= 1,
                f"model.layers must be two positive sizes [H1, H2], got {list(self.layers)}.")


SCHEMAS = {
    "rbm": ModelSchema("dgm_lab.models.boltzmann.RBM", RBMConfig, reads_eval=True),
    "dbn": ModelSchema("dgm_lab.models.boltzmann.DBN", DBNConfig, reads_eval=True),
    "dbm": ModelSchema("dgm_lab.models.boltzmann.DBM", DBMConfig, reads_eval=True),
}
