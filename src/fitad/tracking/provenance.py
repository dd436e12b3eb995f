"""Where a run's inputs came from: the DVC md5 of data, the git commit of the code."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

_CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def data_md5(path: str | os.PathLike) -> str:
    """The md5 DVC 3 records for ``path`` in dvc.lock: the file's md5, or for a folder the md5 of the sorted JSON
    list of ``{"md5", "relpath"}`` of its files with ``.dir`` appended."""
    root = Path(path)
    if root.is_file():
        return file_md5(root)
    entries = [{"md5": file_md5(f), "relpath": f.relative_to(root).as_posix()}
               for f in sorted(root.rglob("*")) if f.is_file()]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def data_tags(paths: list[Path]) -> dict[str, str]:
    """``fitad.md5.<path>`` for each existing path: the values dvc.lock records for the same deps."""
    return {f"fitad.md5.{p.as_posix()}": data_md5(p) for p in paths if p.exists()}


def git_tags(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """``mlflow.source.git.commit`` and ``fitad.git_dirty`` of the working tree, when it is a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"mlflow.source.git.commit": commit, "fitad.git_dirty": str(bool(dirty)).lower()}
