"""Run folders and Optuna storages.

A run folder (``outputs/<name>/`` by default) holds ``run.json`` (which study, in which
storage, from which recipe), the default journal-file storage ``study.journal``, and per-trial
artifacts under ``trials/<number>/``. ``flightco pareto`` and ``flightco export`` need only the
folder. The recipe itself is stored with the study (study user attribute ``recipe``) so that
every worker and every later command runs exactly the same recipe.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from flightco import __version__
from flightco.errors import RunError

RUN_FILE = "run.json"
JOURNAL_FILE = "study.journal"


@dataclass(frozen=True)
class RunInfo:
    study_name: str
    storage: str  # "journal" for the default file in the run folder, else an Optuna storage URL
    fingerprint: str
    flightco_version: str = __version__


def is_rdb_url(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql")


def open_storage(storage: str, run_dir: Path) -> optuna.storages.BaseStorage:
    """``"journal"`` -> the run folder's journal file; an RDB URL -> Optuna's RDBStorage."""
    if storage == "journal":
        run_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    if not is_rdb_url(storage):
        raise RunError(f"storage: {storage!r} is not supported; use sqlite:///FILE, postgresql://..., or leave it empty")
    try:
        return optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
    except Exception as exc:  # sqlalchemy raises many types; the message is what matters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise RunError(f"storage: cannot open {storage!r}: {first}") from None


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    tmp.replace(run_dir / RUN_FILE)


def read_run_info(run_dir: Path) -> RunInfo:
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: run folder not found")
    if not path.is_file():
        raise RunError(f"{run_dir}: not a flightco run folder (no {RUN_FILE})")
    try:
        return RunInfo(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise RunError(f"{path}: unreadable ({exc.__class__.__name__})") from None


def load_study(run_dir: Path) -> tuple[RunInfo, optuna.Study]:
    """Open the study a run folder points at, read-only use intended."""
    info = read_run_info(run_dir)
    storage = open_storage(info.storage, Path(run_dir))
    try:
        study = optuna.load_study(study_name=info.study_name, storage=storage)
    except KeyError:
        raise RunError(f"{run_dir}: study {info.study_name!r} not found in its storage") from None
    return info, study


def trial_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "trials" / f"{number:04d}"


def stored_recipe(study: optuna.Study) -> dict[str, Any]:
    recipe = study.user_attrs.get("recipe")
    if not isinstance(recipe, dict):
        raise RunError(f"study {study.study_name!r} has no stored recipe (not created by flightco?)")
    return recipe
