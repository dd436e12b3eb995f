"""Paths read from files (state records, metadata.jsonl) must stay inside the folder they belong to."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A path taken from a file points outside its folder (``..``, an absolute path, a symlink out)."""


def path_problem(root: str | os.PathLike, rel: object) -> str | None:
    """Why ``rel`` (a path read from a file) may not be used under ``root``, or None when it is safe.

    Refused: anything but a non-empty string, absolute paths (POSIX or Windows style), any ``..``
    segment, and paths that leave ``root`` once symlinks are resolved (a link, or a linked parent
    folder, pointing out). ``.`` segments are fine.
    """
    if not isinstance(rel, str) or not rel.strip():
        return f"{rel!r} is not a relative path"
    if "\0" in rel:
        return f"{rel!r} contains a NUL byte"
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or rel.startswith(("/", "\\")):
        return f"{rel!r} is an absolute path, outside the dataset directory"
    if ".." in posix.parts or ".." in windows.parts:
        return f"{rel!r} contains '..' and may point outside the dataset directory"
    base = Path(root).resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        return f"{rel!r} cannot be resolved ({exc})"
    if target != base and not target.is_relative_to(base):
        return f"{rel!r} resolves to {str(target)!r}, outside the dataset directory {str(base)!r}"
    return None


def resolve_inside(root: str | os.PathLike, rel: object, source: str = "") -> Path:
    """``root / rel`` when it stays inside ``root`` (see :func:`path_problem`), else UnsafePathError.

    ``source`` names where ``rel`` was read (a file and record), and starts the message.
    """
    problem = path_problem(root, rel)
    if problem:
        raise UnsafePathError(f"{source}: {problem}" if source else problem)
    return Path(root) / str(rel)
