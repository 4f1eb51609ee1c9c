"""Where and with what a result was computed: hardware, git commit, package version."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

import dgm_lab


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    record = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "torch": torch.__version__}
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
        record["gpu_count"] = torch.cuda.device_count()
    return record


def describe(record: dict) -> str:
    """One line: the GPU when there was one, else the CPU model, cores and threads."""
    if record.get("gpu"):
        return f"{record['gpu']} (x{record.get('gpu_count', 1)})"
    threads = record.get("omp_num_threads")
    return f"{record.get('cpu', '?')}, {record.get('cpu_cores', '?')} cores" + (f", {threads} thread(s)" if threads else "")


def git_commit(repo: Path) -> str | None:
    """HEAD of the checkout, with ``-dirty`` when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=30)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=30)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def package_version() -> str:
    try:
        return metadata.version("dgm-lab")
    except metadata.PackageNotFoundError:
        return dgm_lab.__version__
