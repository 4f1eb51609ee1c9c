"""Evaluation: dgm-lab's metric paths versus the library called directly or a hand-written one.

- FID/IS/KID/precision-recall of N images through ``SampleQuality`` (LeNet features: the
  InceptionV3 weights cannot be downloaded here) versus ``torch_fidelity.calculate_metrics`` on
  the same uint8 tensors with the same settings; each repetition starts with an empty reference
  cache, so dgm-lab gets no head start.
- ``test/nll_iwae`` with k importance samples (the model's ``importance_weighted_log_px``, the
  path ``test_step`` takes) versus a hand-written batched importance sampler.
- AIS log Z of a 500-hidden RBM (``annealed_importance_sampling``) versus a hand-written AIS.
- Peak RSS of evaluating 10k versus 50k samples of a model, each in its own child process.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import alternate, row, seconds

REPO = Path(__file__).resolve().parent.parent
ALL = {"fid": True, "is": True, "kid": True, "prc": True}


class Images(torch.utils.data.TensorDataset):
    """torch-fidelity reads one uint8 image per item, not TensorDataset's 1-tuples."""

    def __getitem__(self, i):
        return self.tensors[0][i]


def datamodule(name: str):
    from dgm_lab.data import DigitsDataModule, MNISTDataModule

    data = DigitsDataModule() if name == "digits" else MNISTDataModule(data_dir=os.environ.get("DGM_DATA_DIR", "data"))
    data.setup()
    return data


def sample_quality(smoke: bool, repeats: int) -> dict:
    import torch_fidelity

    from dgm_lab.data.base import to_uint8
    from dgm_lab.metrics.extractors import resolve_extractor
    from dgm_lab.metrics.sample_quality import SampleQuality
    from dgm_lab.metrics.settings import Settings

    data = datamodule("digits" if smoke else "mnist")
    n = 180 if smoke else 10000
    generated = to_uint8(data.splits["train"].images[:n])
    real_count = min(n, len(data.splits["test"]))
    real = to_uint8(data.splits["test"].images[:real_count])
    kid = {"kid_subsets": 10 if smoke else 100, "kid_subset_size": min(100 if smoke else 1000, real_count)}
    tmp = tempfile.mkdtemp()

    def framework():
        settings = Settings.from_config({"compute": ALL, "num_samples": n, "num_real": real_count,
                                         "cache_dir": tempfile.mkdtemp(dir=tmp), **kid})
        SampleQuality(settings, resolve_extractor(settings, data.name), data).evaluate("test", images=generated)

    def direct():
        torch_fidelity.calculate_metrics(input1=Images(generated), input2=Images(real), fid=True, isc=True, kid=True,
                                         prc=True, feature_extractor="lenet-mnist", cuda=False, cache=False,
                                         verbose=False, save_cpu_ram=True, batch_size=500, **kid)

    result = alternate(seconds(framework), seconds(direct), repeats)
    return row("evaluation", f"FID/IS/KID/PRC, {n} images (LeNet)", "dgm-lab SampleQuality",
               "torch_fidelity.calculate_metrics", "CPU s", result)


def hand_iwae(model, x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """log p(x) ~ logmeanexp over k draws of log p(x|z) + log p(z) - log q(z|x), drawn in chunks."""
    with torch.no_grad():
        h = model.encoder(x)
        mean, log_var = h.chunk(2, dim=-1)
        log_var = log_var.clamp(-12.0, 8.0)
        std = torch.exp(0.5 * log_var)
        pieces = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            eps = torch.randn(n, *mean.shape)
            z = mean + eps * std
            log_q = (-0.5 * (eps.pow(2) + log_var + math.log(2 * math.pi))).sum(-1)
            log_prior = (-0.5 * (z.pow(2) + math.log(2 * math.pi))).sum(-1)
            logits = model.decoder(z.reshape(-1, z.shape[-1])).reshape(n, *x.shape)
            log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand(n, *x.shape), reduction="none").flatten(2).sum(-1)
            pieces.append((log_lik + log_prior - log_q).double())
        return torch.logsumexp(torch.cat(pieces), 0) - math.log(k)


def iwae(smoke: bool, repeats: int) -> dict:
    from benchmarks.step import compose_config
    from dgm_lab import builders

    k, batch = (50, 20) if smoke else (5000, 100)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["model=vae", "data=digits" if smoke else "data=mnist"], tmp)
        data = builders.build_datamodule(cfg)
        builders.fill_data_fields(cfg, data)
        model = builders.build_model(cfg).eval()
        data.setup()
    x = data.splits["test"].images[:batch]
    chunk = max(1, model.iwae_batch // len(x))
    framework = seconds(lambda: model.importance_weighted_log_px(x, k))
    hand = seconds(lambda: hand_iwae(model, x, k, chunk))
    result = alternate(framework, hand, repeats, warmup=1)
    scale = 1.0 / len(x)  # seconds per image
    return row("evaluation", f"test/nll_iwae k={k}, {len(x)} images", "model.importance_weighted_log_px",
               "hand-written batched importance sampler", "CPU s/image", result, scale=scale)


def hand_ais(weight, visible_bias, hidden_bias, base_bias, num_betas: int, runs: int) -> torch.Tensor:
    """Salakhutdinov & Murray (2008) AIS for a Bernoulli RBM from a base-rate model; log Z."""
    betas = torch.linspace(0, 1, num_betas + 1, dtype=torch.float64).tolist()
    v = torch.bernoulli(torch.sigmoid(base_bias).expand(runs, -1))
    log_w = torch.zeros(runs, dtype=torch.float64)

    def log_p_star(v, beta):
        return (1 - beta) * (v @ base_bias) + beta * (v @ visible_bias) + F.softplus(beta * (v @ weight + hidden_bias)).sum(-1)

    for previous, beta in zip(betas[:-1], betas[1:], strict=True):
        log_w += log_p_star(v, beta) - log_p_star(v, previous)
        if beta < 1:
            h = torch.bernoulli(torch.sigmoid(beta * (v @ weight + hidden_bias)))
            v = torch.bernoulli(torch.sigmoid((1 - beta) * base_bias + beta * (h @ weight.T + visible_bias)))
    log_z_base = F.softplus(base_bias).sum() + weight.shape[1] * math.log(2)
    return log_z_base + torch.logsumexp(log_w, 0) - math.log(runs)


def ais(smoke: bool, repeats: int) -> dict:
    from dgm_lab.metrics.ais import annealed_importance_sampling
    from dgm_lab.models.boltzmann import RBMLayer

    num_betas, runs, hidden = (50, 10, 20) if smoke else (1000, 100, 500)
    torch.manual_seed(0)
    layer = RBMLayer(784, hidden, "bernoulli", 0, init_std=0.01)
    params = layer.ais_params()
    p64 = params.to(torch.float64)
    base = torch.zeros(784, dtype=torch.float64)
    framework = seconds(lambda: annealed_importance_sampling(params, base, num_betas, runs))
    hand = seconds(lambda: hand_ais(p64.weight, p64.visible_bias, p64.hidden_bias, base, num_betas, runs))
    result = alternate(framework, hand, repeats)
    return row("evaluation", f"AIS log Z, 784x{hidden} RBM, {num_betas} temperatures x {runs} runs",
               "annealed_importance_sampling", "hand-written AIS", "CPU s", result)


def peak_rss_child(num_samples: int, smoke: bool) -> None:
    """(child process) Evaluate ``num_samples`` samples of an untrained VAE; print the peak RSS in bytes."""
    from benchmarks.step import compose_config
    from dgm_lab import builders
    from dgm_lab.metrics.extractors import resolve_extractor
    from dgm_lab.metrics.sample_quality import SampleQuality
    from dgm_lab.metrics.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["model=vae", "data=digits" if smoke else "data=mnist"], tmp)
        data = builders.build_datamodule(cfg)
        builders.fill_data_fields(cfg, data)
        model = builders.build_model(cfg).eval()
        settings = Settings.from_config({"compute": ALL, "num_samples": num_samples, "num_real": 10000,
                                         "kid_subsets": 10 if smoke else 100, "cache_dir": tmp})
        SampleQuality(settings, resolve_extractor(settings, data.name), data).evaluate("test", model=model)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def peak_rss(smoke: bool, repeats: int) -> dict:
    small, large = (100, 300) if smoke else (10000, 50000)

    def rss(n: int):
        def measured() -> float:
            out = subprocess.run([sys.executable, "-m", "benchmarks.evaluation", "--rss", str(n),
                                  *(["--smoke"] if smoke else [])], cwd=REPO, capture_output=True, text=True, check=True)
            return float(out.stdout.split()[-1])
        return measured

    result = alternate(rss(large), rss(small), repeats)
    return row("evaluation", f"peak RSS, evaluating {large} vs {small} samples", f"{large} samples",
               f"{small} samples", "MB", result, scale=1e-6)


def run(smoke: bool, repeats: int) -> list[dict]:
    rows = []
    for measure in (sample_quality, iwae, ais):
        rows.append(measure(smoke, repeats))
        print(rows[-1]["name"], round(rows[-1]["ratio"], 3), flush=True)
    rows.append(peak_rss(smoke, 1))  # peak memory is not noisy: one pair
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rss", type=int, required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    peak_rss_child(args.rss, args.smoke)
