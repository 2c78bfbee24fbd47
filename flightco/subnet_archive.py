"""Every subnet a supernet has scored, kept beside its checkpoint (``<key>.scores.jsonl``).

A subnet's inherited score depends on the supernet, the data and the scoring settings, never on
the hardware. So the scores one search measured are valid for every later search of the same
supernet: another hardware target, other constraints, a resume. They are what the accuracy
predictor (:mod:`flightco.accuracy_predictor`) learns from, as Once-for-All and APQ train their
accuracy predictors on subnets measured with inherited weights.

The file is append-only JSON lines, one record per scored subnet, each written with a single
``O_APPEND`` write so that concurrent workers never interleave partial lines; a line cut short by
a crash is skipped when read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ARCHIVE_SUFFIX = ".scores.jsonl"


@dataclass(frozen=True)
class ScoreSettings:
    """What, besides the supernet, a score depends on: records measured otherwise are not mixed."""

    calibration_images: int
    finetune_steps: int
    finetune_lr: float


@dataclass(frozen=True)
class SubnetRecord:
    """One scored subnet: its Optuna parameters and Genome, the inherited accuracy (before any
    fine-tuning; None when not measured separately) and the search's score (None when early
    stopping skipped the fine-tuning)."""

    params: dict[str, Any]
    genome: dict[str, Any]
    settings: ScoreSettings
    inherited_accuracy: float | None
    accuracy: float | None


def archive_path(checkpoint: Path) -> Path:
    """The archive that belongs to a supernet checkpoint ``<dir>/<key>.pt``."""
    return checkpoint.with_name(checkpoint.stem + ARCHIVE_SUFFIX)


def append(path: Path, record: SubnetRecord) -> None:
    """Add one record with a single append-mode write (whole lines, even with several workers)."""
    line = json.dumps({"params": record.params, "genome": record.genome, "settings": asdict(record.settings),
                       "inherited_accuracy": record.inherited_accuracy, "accuracy": record.accuracy},
                      sort_keys=True, separators=(",", ":")) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _parse(line: str) -> SubnetRecord | None:
    try:
        d = json.loads(line)
        return SubnetRecord(params=dict(d["params"]), genome=dict(d["genome"]), settings=ScoreSettings(**d["settings"]),
                            inherited_accuracy=d["inherited_accuracy"], accuracy=d["accuracy"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash, or not ours


def read(path: Path) -> list[SubnetRecord]:
    """Every whole record of one archive, in the order they were scored (none if it is missing)."""
    return [record for _, record in ArchiveReader()._records(path)]


def load(paths: Iterable[Path], settings: ScoreSettings) -> list[SubnetRecord]:
    """Records measured with ``settings`` from every archive in ``paths`` (see ArchiveReader.load)."""
    return ArchiveReader().load(paths, settings)


class ArchiveReader:
    """Reads archives as they grow. They are append-only, so each call parses only the lines
    written since the last one: a search asks before every trial whether a fit is due, and
    re-reading the whole archive each time would cost more the longer it runs."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, list[tuple[str, SubnetRecord]]]] = {}

    def _records(self, path: Path) -> list[tuple[str, SubnetRecord]]:
        """(genome key, record) of every whole line of ``path`` so far."""
        offset, records = self._seen.get(path, (0, []))
        if path.is_file():
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1  # a line still being written waits for its newline
            for record in map(_parse, chunk[:end].decode().splitlines()):
                if record is not None:
                    records.append((json.dumps(record.genome, sort_keys=True), record))
            offset += end
        self._seen[path] = (offset, records)
        return records

    def load(self, paths: Iterable[Path], settings: ScoreSettings) -> list[SubnetRecord]:
        """Records measured with ``settings`` from every archive in ``paths``. A Genome scored in
        more than one place keeps one record (a repeat adds nothing to learn from): its first one
        with a search score, or its first one if early stopping skipped its fine-tuning everywhere."""
        kept: dict[str, SubnetRecord] = {}
        for path in paths:
            for key, record in self._records(path):
                if record.settings != settings:
                    continue
                if key not in kept or (kept[key].accuracy is None and record.accuracy is not None):
                    kept[key] = record
        return list(kept.values())


def in_sibling_runs(path: Path) -> list[Path]:
    """The same file (``<run>/<folder>/<name>``) in the sibling run folders under the same parent,
    sorted, ``path`` itself excluded: how a supernet's checkpoint and its archive are found for reuse."""
    here = path.resolve()
    parent = here.parent.parent.parent
    return sorted(p for p in parent.glob(f"*/{here.parent.name}/{here.name}") if p.resolve() != here)


def here_and_in_sibling_runs(path: Path) -> list[Path]:
    """``path`` first, then the same file in the sibling run folders (see :func:`in_sibling_runs`)."""
    return [path, *in_sibling_runs(path)]


def archives_for(checkpoint: Path) -> list[Path]:
    """This run's archive and those of sibling run folders that searched the same supernet
    (``<parent>/*/supernet/<key>.scores.jsonl``), as the checkpoint itself is found for reuse."""
    return here_and_in_sibling_runs(archive_path(checkpoint))


def settings_from(spec: Any, calibration_images: int) -> ScoreSettings:
    """The ScoreSettings of a recipe's ``search.supernet`` block and the calibration set's size."""
    return ScoreSettings(calibration_images=int(calibration_images), finetune_steps=int(spec.finetune_steps),
                         finetune_lr=float(spec.finetune_lr))
