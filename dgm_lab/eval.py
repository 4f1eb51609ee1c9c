"""``dgm-eval``: recompute a trained model's metrics on a split and write ``eval.json``.

    dgm-eval ckpt_path=outputs/vae/<run>                 # best checkpoint of a run, test split
    dgm-eval ckpt_path=<file.ckpt> eval.iwae_k=5000 split=val
    dgm-eval ckpt_path=outputs/vae/<run> metrics=[fid,is,kid,prc] likelihood=false   # sample quality
    dgm-eval images=<folder or .npz> data=mnist metrics=lenet   # saved samples -> outputs/eval/<name>-<id>/eval.json
    dgm-eval images=<labelled export> data=mnist metrics=cas    # train on synthetic vs as many real images
    dgm-eval ckpt_path=<run> likelihood=false metrics=inception metrics.inception_weights=<file> \
        metrics.num_samples=50000 metrics.num_real=50000 split=train                   # the papers' protocol

Every long loop shows a progress bar (Lightning's batches, then IWAE chunks, AIS temperatures,
feature extraction); SIGTERM or Ctrl-C stops it at once with one sentence (exit 128 + signal).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dgm_lab.cli import hydra_main, reports_user_errors
from dgm_lab.config import new_run_id
from dgm_lab.errors import ConfigError
from dgm_lab.files import write_atomically
from dgm_lab.interrupts import stop_on_signals
from dgm_lab.metrics import specs
from dgm_lab.run_folder import EVAL_RECORD, RunFolder, scalar_metrics
from dgm_lab.settings import check_paths, check_seed


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.split``; returns and writes the eval record."""
    # Imported here: ``dgm-eval --help`` and usage errors answer without loading torch and Lightning.
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import TQDMProgressBar

    from dgm_lab.checkpoints import load_checkpoint, rebuild, resolve_checkpoint
    from dgm_lab.metrics.sample_quality import evaluate_for_cli
    from dgm_lab.metrics.settings import Settings

    check_seed(cfg.get("seed"))
    check_paths(cfg, "ckpt_path", "images", "output")
    sample_quality_only = bool(cfg.get("images")) or not cfg.get("likelihood", True)
    # the papers' FID protocol compares samples with the training images: allowed where no likelihood is computed
    if cfg.split not in ("val", "test") and not (cfg.split == "train" and sample_quality_only):
        raise ConfigError(f"split must be val or test (or train, for sample quality alone: images= or "
                          f"likelihood=false), got {cfg.split!r}.")
    started = time.time()
    settings = Settings.from_config(OmegaConf.to_container(cfg.metrics, resolve=True) if cfg.get("metrics") else None)
    if cfg.get("images"):
        return _evaluate_images(cfg, settings, started)
    if not cfg.get("ckpt_path"):
        raise ConfigError("pass ckpt_path=<checkpoint file or run folder>, or images=<folder or .npz> data=<dataset>.")
    given = [group for group in ("model", "data") if cfg.get(group) is not None]
    if given:  # they would be silently ignored: the checkpoint's own config rebuilds both
        raise ConfigError(f"dgm-eval ckpt_path= rebuilds the model and its data from the checkpoint's config, so "
                          f"{' and '.join(g + '=' for g in given)} would be ignored: remove them "
                          "(data= goes with images=; paths.data_dir= points at another data folder).")
    ckpt_file, run_folder = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = load_checkpoint(ckpt_file, cfg.get("allow_targets"))
    pl.seed_everything(cfg.seed, verbose=False)
    rebuilt = rebuild(checkpoint, data_dir=cfg.paths.data_dir, evaluation=OmegaConf.to_container(cfg.eval, resolve=True))
    datamodule, model = rebuilt.datamodule, rebuilt.model
    # Lightning's tqdm bar, as in training (its default would be Rich's when rich is installed)
    bars = [TQDMProgressBar()] if cfg.progress_bar else []
    trainer = pl.Trainer(accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=cfg.progress_bar, callbacks=bars)
    run_split = trainer.test if cfg.split == "test" else trainer.validate
    results = run_split(model, datamodule=datamodule, verbose=False) if cfg.get("likelihood", True) else []
    record = {
        "checkpoint": str(ckpt_file), "split": cfg.split, "seed": cfg.seed,
        "metrics": scalar_metrics(results[0] if results else {}),
        "eval": OmegaConf.to_container(cfg.eval, resolve=True),
        "diagnostics": model.diagnostics,
    }
    if settings.selected:  # sample quality of the checkpoint's samples, with its protocol
        scores, record["sample_quality"] = evaluate_for_cli(settings, datamodule, cfg.split,
                                                            device=model.device, model=model)
        record["metrics"].update(scores)
    record["wall_time_s"] = round(time.time() - started, 2)
    return _write(record, Path(cfg.output) if cfg.output else RunFolder(run_folder).eval_record)


def _evaluate_images(cfg: DictConfig, settings, started: float) -> dict:
    """Sample-quality metrics of saved images (folder or .npz) against a split of ``data=``."""
    from dgm_lab import builders
    from dgm_lab.metrics.image_files import load_image_files
    from dgm_lab.metrics.sample_quality import evaluate_for_cli
    from dgm_lab.metrics.settings import CAS
    from dgm_lab.synthetic import read_labelled

    if not settings.selected or cfg.get("data") is None:
        raise ConfigError("images= needs a reference dataset and metrics: add data=<mnist|fashion_mnist|...> "
                          "metrics=[fid,is,kid,prc] (or metrics=cas for a labelled export).")
    labels = None
    if CAS in settings.selected:  # train-on-synthetic: the export's labels come with its images
        images, labels = read_labelled(cfg.images)
    else:
        images = load_image_files(cfg.images)
    datamodule = builders.build_datamodule(cfg)
    expected = tuple(datamodule.data_shape)
    if tuple(images.shape[1:]) != expected:
        raise ConfigError(f"images={cfg.images} are {tuple(images.shape[1:])} (C, H, W) but data={datamodule.name} images "
                          f"are {expected}; score them against a dataset of their own shape.")
    scores, quality = evaluate_for_cli(settings, datamodule, cfg.split, images=images, labels=labels,
                                       source={"source": str(Path(cfg.images).resolve())})
    record = {"images": str(Path(cfg.images).resolve()), "split": cfg.split, "seed": cfg.seed,
              "metrics": scores, "sample_quality": quality, "wall_time_s": round(time.time() - started, 2)}
    return _write(record, Path(cfg.output) if cfg.output else images_record_path(cfg))


def images_record_path(cfg: DictConfig) -> Path:
    """``<paths.log_dir>/eval/<images name>-<run id>/eval.json``: never inside the scored folder
    (often a shared dataset), never over an earlier record."""
    return Path(cfg.paths.log_dir) / "eval" / f"{Path(cfg.images).resolve().stem}-{new_run_id()}" / EVAL_RECORD


def _write(record: dict, out: Path) -> dict:
    text = json.dumps(record, indent=2)
    write_atomically(out, lambda temporary: temporary.write_text(text))
    record["path"] = str(out)
    return record


@reports_user_errors("dgm-eval")
def eval_task(cfg: DictConfig) -> None:
    with stop_on_signals(f"evaluating {cfg.get('ckpt_path') or cfg.get('images')}"):
        record = evaluate(cfg)
    shown = ", ".join(f"{k}={specs.format_value(k, v)}" for k, v in record["metrics"].items())
    print(f"[dgm-eval] {shown}\n[dgm-eval] wrote {record['path']}")


def main() -> None:
    hydra_main("eval", eval_task)


if __name__ == "__main__":
    main()
