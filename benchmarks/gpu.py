"""GPU readiness: what one GPU does with dgm-lab, in at most 8 minutes.

    python -m benchmarks.gpu            # on a CUDA machine; writes benchmarks/results/gpu-<date>-<host>.json
    python -m benchmarks.gpu --smoke    # on CPU, tiny sizes: checks that the script runs (CI)

Measures, at 32x32 on the CIFAR-10 JPEG copy (random 32x32 images when it is missing):
- images/s of DCGAN and SNGAN-ResNet (``model=sngan_resnet``) training with bf16 AMP and
  channels-last, and the step ratio dgm-lab / hand-written loop under the same settings;
- the wall time of a 50k-sample FID/IS/KID evaluation with InceptionV3 (torch-fidelity's README:
  2 min 26 s for all metrics on 50k CIFAR-sized images on a P100). Without the real weights
  (``--inception-weights``) the network gets random weights of the same architecture: the time is
  the same, the scores are meaningless and not reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import socket
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
GAN_CASES = {"dcgan": ["model=dcgan"], "sngan_resnet": ["model=sngan_resnet"]}


def synchronized_clock() -> float:
    """Wall time once the GPU has finished its queued work."""
    torch.cuda.synchronize()
    return time.perf_counter()


def training(name: str, smoke: bool, device: str, data: list[str], epochs: int) -> dict:
    from benchmarks import step

    options = [] if smoke else ["trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "trainer.channels_last=true"]
    overrides = [*GAN_CASES[name], *data]
    result = step.measure(overrides, epochs, whole_epoch=False, framework_overrides=options,
                          hand_options={"device": device, "amp": not smoke, "channels_last": not smoke},
                          clock=synchronized_clock if device == "cuda" else time.perf_counter)
    batch = int(next(o.split("=")[1] for o in data if o.startswith("data.batch_size=")))
    return {"name": name, "overrides": overrides + options, "ratio_dgm_lab_over_hand": result["ratio"],
            "ratio_min": result["ratio_min"], "ratio_max": result["ratio_max"],
            "dgm_lab_images_per_s": 1000 * batch / result["candidate"],
            "hand_images_per_s": 1000 * batch / result["baseline"], "steps_per_epoch": result["steps_per_epoch"]}


def inception_evaluation(num_samples: int, device: str, weights: str | None, smoke: bool) -> dict:
    """Wall time of FID/IS/KID of ``num_samples`` generated images against the CIFAR-sized reference."""
    from dgm_lab.metrics.extractors import resolve_extractor
    from dgm_lab.metrics.sample_quality import SampleQuality
    from dgm_lab.metrics.settings import INCEPTION, Settings

    tmp = tempfile.mkdtemp()
    if weights is None:
        weights = random_inception_weights(Path(tmp))
    images = torch.randint(0, 256, (num_samples, 3, 32, 32), dtype=torch.uint8)
    data = RandomImages(images[: min(num_samples, 10000)])
    settings = Settings.from_config({"compute": {"fid": True, "is": True, "kid": True}, "feature_extractor": INCEPTION,
                                     "inception_weights": weights, "num_samples": num_samples,
                                     "num_real": len(data.images), "cache_dir": tmp, "download": False,
                                     "batch_size": 50 if smoke else 500, "kid_subsets": 10 if smoke else 100,
                                     "kid_subset_size": min(1000, len(data.images))})
    start = time.perf_counter()
    SampleQuality(settings, resolve_extractor(settings, data.name), data, device).evaluate("test", images=images)
    return {"num_samples": num_samples, "num_real": len(data.images), "wall_time_s": time.perf_counter() - start,
            "weights": "given" if weights and "random" not in str(weights) else "random (timing only)"}


class RandomImages:
    """The data contract's reference images, for a machine without the CIFAR-10 copy."""

    name, fingerprint, class_names = "random32", "random32", ["0"]

    def __init__(self, images):
        self.images = images

    def reference_images(self, split, limit=None):
        return self.images[:limit], torch.zeros(len(self.images[:limit]), dtype=torch.long)

    def split_images(self, split, limit=None):
        return self.images[:limit].float() / 255

    def set_batches_per_step(self, count):
        pass


def random_inception_weights(folder: Path) -> str:
    from unittest import mock

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from dgm_lab.metrics.extractors import INCEPTION_FILE

    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = folder / "random" / INCEPTION_FILE
    path.parent.mkdir()
    torch.save(torch.nn.Module.state_dict(net), path)
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU: checks the script, measures nothing")
    parser.add_argument("--inception-weights", help="pt_inception-2015-12-05-6726825d.pth for real scores")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/gpu-<date>-<host>.json)")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA device here; run it on a GPU machine, or pass --smoke to check it on CPU.")
    device = "cpu" if args.smoke else "cuda"
    from benchmarks import step
    cifar = Path(step.compose_config([], tempfile.mkdtemp()).paths.data_dir) / "CIFAR-10-images"
    if args.smoke:
        data = ["data=digits", "data.batch_size=16", "data.train_subset=320", "model.latent_dim=8"]
    elif cifar.is_dir():
        data = ["data=cifar10_jpeg", "data.batch_size=128", "data.train_subset=12800"]
    else:
        raise SystemExit(f"benchmarks.gpu: {cifar} is missing; put the CIFAR-10 JPEG copy there (conf/data/cifar10_jpeg.yaml).")
    started = time.perf_counter()
    record = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "smoke": args.smoke, "training": [], "evaluation": None}
    for name in GAN_CASES:
        if args.smoke and name == "sngan_resnet":
            data_case = [*data, "model.generator.channels=8", "model.discriminator.channels=8"]
        else:
            data_case = data
        record["training"].append(training(name, args.smoke, device, data_case, 2 if args.smoke else 4))
        print(json.dumps(record["training"][-1]), flush=True)
    record["evaluation"] = inception_evaluation(20 if args.smoke else 50000, device, args.inception_weights, args.smoke)
    record["wall_time_s"] = time.perf_counter() - started
    print(json.dumps(record["evaluation"]), flush=True)
    stamp = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"gpu-{stamp}-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
