"""A failed stage leaves the outputs of its last good run: put back from DVC's cache.

DVC deletes a stage's outputs before running its command (unless they are `persist`, which
would also switch off DVC's run cache). When the command fails, dvc.lock still names the outputs
of the last good run and DVC's cache holds them (cached outputs always; uncached metrics and
plots once the run cache saved them), so the stage copies them back before it exits. Stages
write their outputs atomically, so a half-written folder is never what is left.

Why not DVC's own checkout (checked in DVC 3.67): `dvc checkout` / `Repo.checkout` take the
repository lock, which the `dvc repro` running this stage holds, so from inside a stage it fails;
`Output.checkout` skips outputs with `cache: false` (the metrics files), which this restores.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml


def restore_last_good(root: Path, stage: str | None = None) -> list[str]:
    """Copy back the outputs dvc.lock records for `stage` (default $DVC_STAGE) that are gone."""
    stage = stage or os.environ.get("DVC_STAGE")
    lock = root / "dvc.lock"
    if not stage or not lock.is_file():
        return []
    entry = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage) or {}
    cache = _cache_dir(root)
    restored = []
    for out in entry.get("outs", []):
        path, digest = root / out["path"], out.get("md5")
        if path.exists() or not digest or cache is None:
            continue
        if _copy_from_cache(cache, digest, path):
            restored.append(out["path"])
    return restored


def _cache_dir(root: Path) -> Path | None:
    """DVC's local cache of the repository (an experiment copy shares its parent's)."""
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            return Path(repo.cache.local.path)
    except Exception:  # no DVC repo here: nothing was deleted by DVC either
        return None


def _object(cache: Path, digest: str) -> Path:
    return cache / digest[:2] / digest[2:]


def _copy_from_cache(cache: Path, digest: str, path: Path) -> bool:
    """Rebuild a file, or a folder from its .dir listing, next to `path`, then move it in."""
    source = _object(cache, digest)
    if not source.is_file():
        return False
    tmp = path.with_name(f".{path.name}.restore")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if digest.endswith(".dir"):
        for item in json.loads(source.read_text()):
            blob = _object(cache, item["md5"])
            if not blob.is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            target = tmp / item["relpath"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blob, target)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return True
