"""``dgm-finetune``: the classifier starts from the checkpoint's recognition weights (the random-init
baseline does not, and shares everything else), and the command reports both errors end to end."""

from __future__ import annotations

import json

import pytest
import torch

from dgm_lab import builders
from dgm_lab.errors import ConfigError
from dgm_lab.pretrained import classifier
from tests.conftest import REPO, train_run
from tests.inprocess import run_main


def built(compose_train, *overrides):
    cfg = compose_train(["data=digits", "logger=none", *overrides])
    builders.fill_data_fields(cfg, builders.build_datamodule(cfg))
    torch.manual_seed(123)
    model = builders.build_model(cfg)
    with torch.no_grad():  # weights no initialiser would draw, so a copy is recognisable
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    return model


def linears(net) -> list[torch.nn.Linear]:
    return [m for m in net.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize(("model", "extra"), [("rbm", ["model.num_hidden=20"]), ("dbn", ["model.layers=[20,12]"]),
                                              ("dbm", ["model.layers=[20,12]"])])
def test_boltzmann_weights_become_the_lower_layers(compose_train, model, extra):
    machine = built(compose_train, f"model={model}", *extra)
    layers = [machine.rbm] if model == "rbm" else list(machine.layers)
    pretrained, random = classifier(machine, 10, True, seed=0), classifier(machine, 10, False, seed=0)
    for layer, tuned, fresh in zip(layers, linears(pretrained), linears(random), strict=False):
        assert torch.equal(tuned.weight, layer.weight.T) and torch.equal(tuned.bias, layer.hidden_bias)
        assert not torch.allclose(fresh.weight, layer.weight.T) and not torch.allclose(fresh.bias, layer.hidden_bias)
    assert len(linears(pretrained)) == len(layers) + 1
    assert torch.equal(linears(pretrained)[-1].weight, linears(random)[-1].weight)  # the same head
    assert isinstance(pretrained[0][-1], torch.nn.Sigmoid)


def test_vae_encoder_becomes_the_lower_layers(compose_train):
    vae = built(compose_train, "model=vae", "model.latent_dim=6")
    pretrained, random = classifier(vae, 10, True, seed=0), classifier(vae, 10, False, seed=0)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(pretrained[0](x), vae.encode(x)[0])  # features = the posterior mean
    assert not torch.allclose(random[0](x), vae.encode(x)[0])
    assert torch.equal(linears(pretrained)[-1].weight, linears(random)[-1].weight)
    for tuned, source in zip(linears(pretrained)[:-1], linears(vae.encoder), strict=True):
        assert torch.equal(tuned.weight, source.weight)
    linears(pretrained)[0].weight.data.zero_()
    assert linears(vae.encoder)[0].weight.abs().sum() > 0  # a copy: fine-tuning leaves the checkpoint alone


def test_other_models_are_one_sentence(compose_train):
    with pytest.raises(ConfigError, match="vae, rbm, dbn or dbm"):
        classifier(built(compose_train, "model=gan"), 10, True, seed=0)


def test_dgm_finetune_end_to_end_on_digits(tmp_path):
    run = tmp_path / "rbm"
    train_run(run, "model=rbm", "model.num_hidden=30", "test=false")
    out = tmp_path / "finetune"
    result = run_main("dgm-finetune", f"ckpt_path={run}", "data.num_labeled=50", "steps=30", "batch_size=25",
                      f"hydra.run.dir={out}", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    for split in ("train", "val", "test"):
        for key in (f"{split}/error", f"{split}/error_random_init"):
            assert 0 <= metrics[key] <= 1
    assert metrics["test/error"] != metrics["test/error_random_init"]
    assert summary["data"]["labels"]["labeled_per_class"] == [5] * 10
    assert summary["diagnostics"]["budget"] == {"steps": 30, "batch_size": 25, "optimizer": "Adam", "lr": 1e-3,
                                                "weight_decay": 0.0, "labelled_images": 50}
    assert "[dgm-finetune] train/error=" in result.stdout
    report = tmp_path / "report.html"
    compared = run_main("dgm-compare", str(out), "--out", str(report), cwd=REPO)
    assert compared.returncode == 0, compared.stderr[-2000:]
    table = report.with_suffix(".md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| test/error")}
    assert float(rows["test/error ↓"]) == pytest.approx(metrics["test/error"], abs=1e-4)  # lower is better
    assert float(rows["test/error_random_init ↓"]) == pytest.approx(metrics["test/error_random_init"], abs=1e-4)
    bad = run_main("dgm-finetune", f"ckpt_path={run}", "data.num_labeled=55", f"hydra.run.dir={tmp_path / 'bad'}",
                   cwd=REPO)
    assert bad.returncode == 2 and "multiple of 10" in bad.stderr and "Traceback" not in bad.stderr
