"""The run folder's ``metrics.csv`` logger, which keeps the rows of earlier attempts on resume.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts ("Previous log files
in this directory will be deleted"), so every resume dropped the rows logged before the
interruption. This writer keeps the file and starts from its header; when a resumed attempt
logs a new column, Lightning's own header rewrite reads the old rows back and keeps them.
"""

from __future__ import annotations

import csv

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's ``ExperimentWriter`` that appends to an existing metrics file."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = sorted(key for key in header if key)


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives resumes (``AppendingExperimentWriter``)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
