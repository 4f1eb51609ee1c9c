"""Helpers for tests of the entry points run in this process, and of files left untouched."""

from __future__ import annotations

import sys
from pathlib import Path


def main_in_process(prog: str, *args: str, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run ``prog``'s ``main()`` (what its console script calls: Hydra, then the task) in this
    process, which costs a second instead of a subprocess's ~25 s of imports; returns
    (exit code, stdout, stderr)."""
    from dgm_lab import eval as eval_cli
    from dgm_lab import sample as sample_cli
    from dgm_lab import train as train_cli

    main = {"dgm-eval": eval_cli.main, "dgm-sample": sample_cli.main, "dgm-train": train_cli.main}[prog]
    monkeypatch.setattr(sys, "argv", [prog, *args])
    monkeypatch.delenv("DGM_RAISE", raising=False)
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[bytes, int]]:
    """{relative path: (content, mtime_ns)} of every file under ``folder``, but those under ``skip``."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and not str(p.relative_to(folder)).startswith(skip)}
