"""Files a user asks for (``--out``, ``--csv``, ``--plot``): checked before any work, written atomically.

Every such path is checked up front: it must not be a folder, its parent must be (or become) a
folder we can write to, and it must not replace a run folder's own files
(:func:`flightco.runs.check_output_path`). Writing goes through :func:`flightco.atomic.atomic_path`,
so a crash or an error leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flightco.errors import OutputError


def check_writable_file(path: Path, option: str) -> None:
    """Raise a one-line :class:`OutputError` naming ``option`` unless ``path`` can be written."""
    from flightco.runs import check_output_path

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option}: {path} is a folder; give a file name")
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{option}: {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{option}: {path}: folder {parent} is not writable")
            break
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{option}: {path} exists and is not writable")
    check_output_path(path, option)


def write_output(path: Path, option: str, writer: Callable[[Path], Any]) -> Path:
    """Check ``path``, then call ``writer(tmp)`` and atomically move ``tmp`` onto ``path``."""
    from flightco.atomic import atomic_path

    path = Path(path)
    check_writable_file(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            writer(tmp)
    except OSError as exc:
        raise OutputError(f"{option}: cannot write {path} ({exc.strerror or exc})") from None
    return path
