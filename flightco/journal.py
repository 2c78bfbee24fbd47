"""Integrity of the default journal-file storage (``study.journal``): detect and repair a torn tail.

Optuna's journal is an append-only file of JSON lines. A crash in the middle of an append (power
loss, ``kill -9``, a full disk) leaves a last line without its newline; garbage can also end up
at the end of the file. Optuna then either silently skips the torn record when reading or, worse,
appends the next record onto the half-written line, after which the whole study is unreadable.

So flightco checks the journal before Optuna touches it:

* read-only commands (``pareto``, ``export``, ``show``, ``profile breakdown``) **refuse** a damaged
  journal with one line saying how to repair it; they never modify a run folder;
* ``flightco optimize`` (which holds the run folder's exclusive lock) and ``flightco repair RUN``
  **repair** it: the file is truncated after its last complete, valid record and the removed
  bytes are kept beside it in ``study.journal.torn-<UTC time>``, so nothing is thrown away.

Damage *before* a valid record (not a torn tail) is never repaired automatically: that would
drop good records, so it is refused with the line number.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from flightco.errors import RunError


@dataclass(frozen=True)
class JournalCheck:
    """Where a journal's valid records end.

    ``good_bytes`` is the length of the valid prefix; ``bad_bytes`` what follows it (0 when the
    file is intact); ``first_bad_line`` the 1-based line number where the damage starts;
    ``valid_after_damage`` whether any valid record follows the damage (then it is not a tail).
    """

    path: Path
    good_bytes: int
    bad_bytes: int
    first_bad_line: int
    valid_after_damage: bool

    @property
    def intact(self) -> bool:
        return self.bad_bytes == 0


def _valid_record(line: bytes) -> bool:
    if not line.endswith(b"\n"):
        return False
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and "op_code" in rec


def check_journal(path: str | Path) -> JournalCheck:
    """Scan ``path`` line by line (a missing file is intact: nothing was written yet)."""
    path = Path(path)
    if not path.is_file():
        return JournalCheck(path, 0, 0, 0, False)
    good = 0
    first_bad = 0
    valid_after = False
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            ok = _valid_record(line)
            if first_bad == 0:
                if ok:
                    good += len(line)
                    continue
                first_bad = number
            elif ok:
                valid_after = True
                break
    size = path.stat().st_size
    return JournalCheck(path, good, size - good, first_bad, valid_after)


def refuse_if_damaged(path: str | Path, run_dir: Path) -> None:
    """For read-only commands: raise a one-line :class:`RunError` saying how to repair."""
    c = check_journal(path)
    if c.intact:
        return
    if c.valid_after_damage:
        raise RunError(f"{c.path}: damaged at line {c.first_bad_line} with valid records after it; "
                       "it cannot be repaired automatically (restore it from a backup)")
    raise RunError(f"{c.path}: torn or garbage tail ({c.bad_bytes} bytes after line {c.first_bad_line - 1}, "
                   f"e.g. a crash mid-write); repair it with `flightco repair {run_dir}` "
                   "(keeps the removed bytes beside it) or by re-running `flightco optimize`")


def repair_journal(path: str | Path) -> Path | None:
    """Truncate a torn tail, keeping the removed bytes in a ``.torn-<time>`` file beside the journal.

    Returns the backup's path, or ``None`` when the journal was intact. Only call this while
    holding the run folder's exclusive lock. Damage followed by valid records raises.
    """
    c = check_journal(path)
    if c.intact:
        return None
    if c.valid_after_damage:
        raise RunError(f"{c.path}: damaged at line {c.first_bad_line} with valid records after it; "
                       "it cannot be repaired automatically (restore it from a backup)")
    from flightco.atomic import write_bytes

    with open(c.path, "rb") as fh:
        fh.seek(c.good_bytes)
        tail = fh.read()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = c.path.with_name(f"{c.path.name}.torn-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = c.path.with_name(f"{c.path.name}.torn-{stamp}-{n}")
    write_bytes(backup, tail)  # the removed bytes are safe on disk before the journal is cut
    with open(c.path, "rb+") as fh:
        fh.truncate(c.good_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    return backup
