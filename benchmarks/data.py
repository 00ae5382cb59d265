"""The shipped series as the window stage writes it, built in a temp root (no DVC needed)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.common import ROOT


def shipped_windows(folder: Path | None = None) -> Path:
    """A root holding data/windows for the shipped data and params.yaml: the first three stages."""
    from seqcast.core.config import load_config
    from seqcast.data import scaling, validation, windowing

    root = Path(folder or tempfile.mkdtemp(prefix="seqcast-bench-"))
    cfg = load_config(ROOT / "params.yaml")
    raw = root / cfg.data.path
    raw.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / cfg.data.path, raw)
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    validation.validate(cfg, root)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    return root
