"""``dgm-compare``: an offline HTML + markdown report comparing run and sweep folders.

``collect`` reads the folders, ``plot`` draws learning curves as SVG, ``report`` renders the
page (``template``) and the markdown tables, ``cli`` is the console script.
"""

from dgm_lab.compare.collect import Run, collect_runs
from dgm_lab.compare.report import write_report

__all__ = ["Run", "collect_runs", "write_report"]
