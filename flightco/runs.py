"""Run folders and Optuna storages.

A run folder (``outputs/<name>/`` by default) holds ``run.json`` (which study, in which
storage, from which recipe), the default journal-file storage ``study.journal``, and per-trial
artifacts under ``trials/<number>/``. ``flightco pareto`` and ``flightco export`` need only the
folder. The recipe itself is stored with the study (study user attribute ``recipe``) so that
every worker and every later command runs exactly the same recipe.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from flightco import __version__
from flightco.errors import RunError

# flightco reports progress itself; Optuna's INFO lines ("A new study created ...") would land
# on stderr, where a user reads only errors.
optuna.logging.set_verbosity(optuna.logging.WARNING)

RUN_FILE = "run.json"
JOURNAL_FILE = "study.journal"
RESERVED_NAMES = frozenset({RUN_FILE, JOURNAL_FILE, "finals.json", "last_run.json", ".lock", "trials", ".recipe"})
"""Names inside a run folder that belong to the run: no user-requested output may replace them."""
RESERVED_PREFIXES = (JOURNAL_FILE + ".", RUN_FILE + ".", ".")
"""...nor files starting like these (the journal's lock and torn-tail backups, temp files)."""


@dataclass(frozen=True)
class RunInfo:
    study_name: str
    storage: str  # "journal" for the default file in the run folder, else an Optuna storage URL
    fingerprint: str
    flightco_version: str = __version__
    fingerprint_parts: dict[str, str] | None = None  # part -> hash, to name what changed


def is_rdb_url(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql")


HEARTBEAT_INTERVAL_S = int(os.environ.get("FLIGHTCO_HEARTBEAT_S", "30"))
GRACE_PERIOD_S = int(os.environ.get("FLIGHTCO_GRACE_S", str(4 * HEARTBEAT_INTERVAL_S)))


def open_storage(storage: str, run_dir: Path) -> optuna.storages.BaseStorage:
    """``"journal"`` -> the run folder's journal file; an RDB URL -> Optuna's RDBStorage.

    RDB storages get heartbeats (``FLIGHTCO_HEARTBEAT_S``, default 30 s; a trial whose worker
    stopped beating for ``FLIGHTCO_GRACE_S``, default 4 beats, is marked failed) and a
    failed-trial callback that retries such a trial once with the same parameters.
    """
    if storage == "journal":
        run_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    if not is_rdb_url(storage):
        raise RunError(f"storage: {storage!r} is not supported; use sqlite:///FILE, postgresql://USER@HOST/DB, or leave it empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                with_password(storage),
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=retry_callback(),
                engine_kwargs={"pool_pre_ping": True},
            )
    except Exception as exc:  # sqlalchemy raises many types; the first line is what matters
        text = str(exc).strip()
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), exc.__class__.__name__)
        raise RunError(f"storage: cannot open {redact(storage)}: {first}") from None


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Re-enqueue a trial whose worker died, once, with the same parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)


def _with_password_replaced(url: str, replacement: str | None) -> str:
    """``url`` with the password of ``scheme://user:password@host`` replaced by ``replacement``
    (``None``: removed with its colon); a URL without a password comes back unchanged."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            user = cred.split(":", 1)[0]
            return f"{scheme}://{user}{'' if replacement is None else ':' + replacement}@{host}"
    return url


def redact(url: str) -> str:
    """Hide a password in a storage URL before printing it."""
    return _with_password_replaced(url, "***")


PASSWORD_ENV = "FLIGHTCO_STORAGE_PASSWORD"


def strip_password(url: str) -> str:
    """The storage URL without its password: what flightco writes to disk (``run.json``, the
    stored recipe) and prints. Workers get the password from the URL they are given or from
    ``$FLIGHTCO_STORAGE_PASSWORD`` (PostgreSQL's client also reads ``$PGPASSWORD`` / ``~/.pgpass``)."""
    return _with_password_replaced(url, None)


def with_password(url: str) -> str:
    """``url`` with ``$FLIGHTCO_STORAGE_PASSWORD`` put in when it names a user but no password."""
    secret = os.environ.get(PASSWORD_ENV)
    if not secret or "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    if ":" in cred:
        return url
    from urllib.parse import quote

    return f"{scheme}://{cred}:{quote(secret, safe='')}@{host}"


def code_fingerprint() -> str:
    """Hash of flightco's own source files: workers of one study must run the same code."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _remove_stale_journal_lock(run_dir: Path) -> None:
    """Optuna's journal write lock (``study.journal.lock``) left behind by a writer that was killed
    or Ctrl-C'd mid-write. Under the run folder's lock no other process writes this journal, so
    it is stale; left alone, the resumed search would wait Optuna's 30 s grace period on it."""
    for leftover in [run_dir / f"{JOURNAL_FILE}.lock", *run_dir.glob(f"{JOURNAL_FILE}.lock*.rename")]:
        try:
            leftover.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def exclusive_run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the life of a search process using the default journal storage.

    Holding it proves no other flightco process works on this run folder, so trials left
    RUNNING in the journal belong to a process that died (``kill -9``, power loss) and can be
    failed and retried safely.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"{run_dir}: another flightco process is running on this run folder "
                           "(for several workers on one study use an RDB storage: --storage postgresql://...)") from None
        _remove_stale_journal_lock(run_dir)
        yield
    finally:
        fh.close()


def normalize_storage_url(url: str) -> str:
    """Make a relative ``sqlite:///FILE`` absolute (against the current folder, where the user
    typed it), so that ``run.json`` names the same database from wherever ``pareto`` runs later."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        rest = url[len(prefix):]
        path, sep, query = rest.partition("?")
        if path:
            return prefix + str(Path(path).resolve()) + sep + query
    return url


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    from flightco.atomic import write_text

    run_dir.mkdir(parents=True, exist_ok=True)
    data = asdict(info)
    data["storage"] = strip_password(info.storage)  # never a password on disk
    write_text(run_dir / RUN_FILE, json.dumps(data, indent=2) + "\n")


def read_run_info(run_dir: Path) -> RunInfo:
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir}: run folder not found")
    if not path.is_file():
        raise RunError(f"{run_dir}: not a flightco run folder (no {RUN_FILE})")
    try:
        data = json.loads(path.read_text())
        info = RunInfo(**data)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError, OSError) as exc:
        raise RunError(f"{path}: unreadable ({exc.__class__.__name__}); the run folder's own file was "
                       "damaged or replaced") from None
    if not all(isinstance(v, str) for v in (info.study_name, info.storage, info.fingerprint)):
        raise RunError(f"{path}: unreadable (study_name, storage and fingerprint must be strings)")
    return info


def load_study(run_dir: Path) -> tuple[RunInfo, optuna.Study]:
    """Open the study a run folder points at, read-only: a damaged journal is refused (with how
    to repair it), never modified; a missing SQLite file is refused, never created."""
    from flightco.journal import refuse_if_damaged

    info = read_run_info(run_dir)
    if info.storage == "journal":
        refuse_if_damaged(Path(run_dir) / JOURNAL_FILE, Path(run_dir))
    elif info.storage.startswith("sqlite:///"):
        db = info.storage[len("sqlite:///"):].split("?", 1)[0]
        if db and db != ":memory:" and not Path(db).is_file():
            raise RunError(f"{run_dir}: its storage {info.storage} does not exist (moved or deleted?)")
    storage = open_storage(info.storage, Path(run_dir))
    try:
        study = optuna.load_study(study_name=info.study_name, storage=storage)
    except KeyError:
        raise RunError(f"{run_dir}: study {info.study_name!r} not found in its storage") from None
    return info, study


def check_output_path(path: Path, option: str) -> None:
    """Refuse an output path (and the reports written beside it) that would replace a run folder's
    own files (``run.json``, ``study.journal``, ``trials/...``): raise :class:`RunError` naming
    ``option``. Call it before writing anything a user asked for."""
    path = Path(path).resolve()
    for folder in [path.parent, *path.parent.parents]:
        if (folder / RUN_FILE).is_file():
            rel = path.relative_to(folder)
            if rel.parts[0] in RESERVED_NAMES or rel.parts[0].startswith(RESERVED_PREFIXES):
                raise RunError(f"{option}: {path} would overwrite run folder {folder}'s own {rel.parts[0]}; "
                               "choose another file name or folder")
            return


def trial_dir(run_dir: Path, number: int) -> Path:
    return Path(run_dir) / "trials" / f"{number:04d}"


def stored_recipe(study: optuna.Study) -> dict[str, Any]:
    recipe = study.user_attrs.get("recipe")
    if not isinstance(recipe, dict):
        raise RunError(f"study {study.study_name!r} has no stored recipe (not created by flightco?)")
    return recipe
