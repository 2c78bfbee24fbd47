"""Studies and workers: creating or resuming a study, attaching workers, and the trial loop.

One study can be worked on by many processes on many machines through an RDB storage
(PostgreSQL). Everything a worker needs is stored with the study: the recipe (with the search
space's and profiles' YAML texts), the trial budget, the artifact folder, and fingerprints of
the recipe and of flightco's code. A worker whose code differs is refused.

The trial loop (:func:`run_trials`) is Optuna's ask/tell with four additions:

* **an exact budget** shared by all workers: a trial is only run if it is among the first
  ``budget`` trials that have not failed; a trial asked in a race beyond that is closed as
  failed with the reason "budget reached" and never trained;
* **heartbeats** (RDB storages): a thread records a heartbeat while a trial runs; workers fail
  trials whose heartbeat stopped (a dead worker) and Optuna's ``RetryFailedTrialCallback``
  re-enqueues them once with the same parameters;
* **crash recovery** for the default journal file, which has no heartbeats: the process holds
  an exclusive lock on the run folder, so trials it finds RUNNING were left by a process that
  died, and are failed and retried the same way;
* **failures are recorded, not fatal**: a trial whose training diverges is closed as failed
  with its reason, and the loop goes on.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from flightco import __version__
from flightco.errors import RunError
from flightco.recipe import Recipe, recipe_from_stored
from flightco.runs import (
    RunInfo,
    code_fingerprint,
    is_rdb_url,
    normalize_storage_url,
    open_storage,
    strip_password,
    read_run_info,
    redact,
    retry_callback,
    write_run_info,
)
from flightco.search import Objective, Reporter, SearchContext, TrialFailed

ACTIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def make_sampler(recipe: Recipe, n_existing: int) -> optuna.samplers.BaseSampler:
    """Seeded sampler; the seed moves on with the trials already stored, so that a resumed run
    or a second worker does not replay the same random draws."""
    seed = recipe.search.seed + 7919 * n_existing
    # Constraints reach the samplers through Trial.set_constraint (Optuna 5); no constraints_func.
    if recipe.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=recipe.search.population_size, seed=seed)
    if recipe.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
    return optuna.samplers.RandomSampler(seed=seed)


def _load_existing(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def create_or_resume_study(
    recipe: Recipe, run_dir: Path, storage_url: str | None, study_name: str | None = None,
    budget: int | None = None, notify: Callable[[str], None] | None = None,
) -> tuple[optuna.Study, RunInfo]:
    """Open the run's study, creating it (and ``run.json``) on first use.

    Refuses to resume when the search-defining part of the recipe or flightco's code changed,
    naming the changed part(s). Final-stage settings may change: they are stored, and
    ``notify`` is told. ``budget`` (trials) is stored with the study, where workers read it.
    """
    run_dir = Path(run_dir).resolve()
    fingerprint = recipe.search_fingerprint()
    parts = recipe.search_fingerprint_parts()
    url = normalize_storage_url(storage_url or recipe.storage) if (storage_url or recipe.storage) else None
    if (run_dir / "run.json").is_file():
        info = read_run_info(run_dir)
        if (url and strip_password(url) != strip_password(info.storage)) or (study_name and study_name != info.study_name):
            raise RunError(f"{run_dir}: this run folder belongs to study {info.study_name!r} in "
                           f"{redact(info.storage)}; pass --out for a new run folder")
        if info.fingerprint != fingerprint:
            raise RunError(f"{run_dir}: the recipe's search definition changed since this run started "
                           f"({_changed_parts(info.fingerprint_parts, parts)}); "
                           "change it back, or use --out for a new run folder")
        info = RunInfo(info.study_name, info.storage, fingerprint, info.flightco_version, fingerprint_parts=parts)
    else:
        info = RunInfo(study_name=study_name or recipe.name, storage=url or "journal", fingerprint=fingerprint,
                       fingerprint_parts=parts)
    storage = open_storage(url or info.storage, run_dir)  # run.json holds no password: use the given URL's
    existing = _load_existing(storage, info.study_name)
    if existing is not None:
        _check_compatible(existing, fingerprint, parts)
    study = optuna.create_study(
        study_name=info.study_name, storage=storage, directions=[o.direction for o in recipe.objectives],
        sampler=make_sampler(recipe, len(existing.trials) if existing else 0), load_if_exists=True,
    )
    if existing is None:
        study.set_user_attr("recipe", recipe.to_stored())
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("fingerprint_parts", parts)
        study.set_user_attr("code", code_fingerprint())
        study.set_user_attr("flightco_version", __version__)
        study.set_user_attr("objectives", [o.metric for o in recipe.objectives])
        study.set_user_attr("artifact_dir", str(run_dir))
        with warnings.catch_warnings():  # experimental in Optuna 5; named axes in optuna-dashboard
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.metric for o in recipe.objectives])
        from flightco.hw.validation import profile_provenance

        # which profile versions price this study's trials (shown by `flightco pareto`)
        study.set_user_attr("profiles", [profile_provenance(p) for p in recipe.hardware_paths])
        study.set_user_attr("final_settings", recipe.final_settings())
    else:
        before = study.user_attrs.get("final_settings")
        now = recipe.final_settings()
        if before is not None and before != now:
            changed = ", ".join(k for k in now if before.get(k) != now[k])
            study.set_user_attr("final_settings", now)
            study.set_user_attr("recipe", recipe.to_stored())
            if notify:
                notify(f"final-stage settings changed since the last session ({changed}): "
                       "finalists trained from now on use the new ones; earlier finals are kept")
    if budget is not None and study.user_attrs.get("budget") != budget:
        study.set_user_attr("budget", budget)
    write_run_info(run_dir, info)
    return study, info


def _changed_parts(stored: dict[str, str] | None, now: dict[str, str]) -> str:
    if not stored:
        return "which part is unknown: the run was made by an older flightco"
    changed = [k for k in now if stored.get(k) != now[k]] + [k for k in stored if k not in now]
    return "changed: " + ", ".join(changed) if changed else "fingerprint differs"


def _check_compatible(study: optuna.Study, fingerprint: str | None, parts: dict[str, str] | None = None) -> None:
    attrs = study.user_attrs
    if "recipe" not in attrs:
        raise RunError(f"study {study.study_name!r} was not created by flightco")
    if fingerprint is not None and attrs.get("fingerprint") != fingerprint:
        raise RunError(f"study {study.study_name!r} was created from a different recipe "
                       f"({_changed_parts(attrs.get('fingerprint_parts'), parts or {})}); use another --study or --out")
    if attrs.get("code") != code_fingerprint():
        raise RunError(
            f"study {study.study_name!r} was created by different flightco code "
            f"(version {attrs.get('flightco_version')}, code {attrs.get('code')}; this is {__version__}, "
            f"code {code_fingerprint()}); run the same flightco version on every worker"
        )


def attach_worker(storage_url: str, study_name: str, artifact_dir: Path | None = None) -> tuple[optuna.Study, Recipe, Path]:
    """Open an existing study as a worker: recipe, budget and artifact folder come from storage."""
    if not is_rdb_url(storage_url):
        raise RunError(f"--storage: workers need an RDB storage URL (postgresql://... or sqlite:///...), got {storage_url!r}")
    storage = open_storage(storage_url, Path("."))
    existing = _load_existing(storage, study_name)
    if existing is None:
        raise RunError(f"--study: no study named {study_name!r} in {redact(storage_url)}; "
                       "create it with `flightco optimize RECIPE --storage URL --study NAME`")
    _check_compatible(existing, None)
    run_dir = Path(artifact_dir or existing.user_attrs["artifact_dir"])
    recipe = recipe_from_stored(existing.user_attrs["recipe"], files_dir=run_dir / ".recipe")
    if recipe.search_fingerprint() != existing.user_attrs["fingerprint"]:
        raise RunError(f"study {study_name!r}: its stored recipe does not reproduce its fingerprint (stored by another flightco version?)")
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=make_sampler(recipe, len(existing.trials)))
    return study, recipe, run_dir


def study_budget(study: optuna.Study, default: int | None) -> int | None:
    return study.user_attrs.get("budget", default)


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


# ---- heartbeats and crash recovery ---------------------------------------------------------------


def _heartbeat_enabled(study: optuna.Study) -> bool:
    # RDB storages come wrapped in Optuna's caching layer, which forwards the heartbeat API.
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


class _Heartbeat:
    """Records a trial's heartbeat from a background thread while the trial runs."""

    def __init__(self, study: optuna.Study, trial_id: int) -> None:
        self.storage = study._storage
        self.trial_id = trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(interval):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def recover_orphaned_trials(study: optuna.Study, reporter: Reporter) -> int:
    """Fail and retry trials left RUNNING by a process that died.

    Only call this while holding the run folder's exclusive lock (journal storage), when no other
    process can be running a trial of this study.
    """
    retry = retry_callback()
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in orphans:
        study._storage.set_trial_user_attr(t._trial_id, "status", "failed: its process died (found running on resume)")
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        retry(study, study._storage.get_trial(t._trial_id))
    if orphans:
        reporter.stage(f"{len(orphans)} trial(s) left running by a process that died: marked failed, retried once")
    return len(orphans)


# ---- the loop -------------------------------------------------------------------------------------


def _beyond_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial ``number`` is not among the first ``budget`` non-failed trials."""
    rank = sum(1 for t in study.get_trials(deepcopy=False, states=ACTIVE) if t.number <= number)
    return rank > budget


MAX_CONSECUTIVE_FAILURES = 5


def run_trials(
    study: optuna.Study, ctx: SearchContext, reporter: Reporter, *, budget: int | None,
    timeout_s: float | None = None, poll_s: float = 2.0,
) -> int:
    """Run trials until the study holds ``budget`` finished trials (or ``timeout_s`` passes).

    While the remaining trials are running in other workers, keep polling: if one of those
    workers dies, its trial is retried here. A failed trial (e.g. diverged training) is
    recorded and the loop goes on, but ``MAX_CONSECUTIVE_FAILURES`` failures in a row stop it
    with an error, since then the recipe rather than the candidates is at fault.
    Returns the number of trials this call finished.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = Objective(ctx, reporter)
    heartbeat = _heartbeat_enabled(study)
    start = time.monotonic()
    ran = 0
    failures_in_a_row = 0
    while True:
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            break
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        active = sum(t.state in ACTIVE for t in trials)
        if budget is not None and finished >= budget:
            break
        if budget is not None and waiting == 0 and active >= budget:
            time.sleep(poll_s)  # the rest is running elsewhere; stay to retry it if a worker dies
            continue
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize; this loop beats itself.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
        if budget is not None and _beyond_budget(study, trial.number, budget):
            trial.set_user_attr("status", "failed: budget reached before this trial started (not trained)")
            study.tell(trial, state=TrialState.FAIL)
            continue
        done = _run_one(study, trial, objective, heartbeat)
        if done is None:  # another worker failed it meanwhile (our heartbeat lapsed): it is retried
            reporter.stage(f"trial {trial.number} was failed by another worker while it ran here (its heartbeat "
                           "lapsed: a very busy machine?); its result is dropped, the trial is retried")
            continue
        if done:
            ran += 1
            failures_in_a_row = 0
            continue
        failures_in_a_row += 1
        if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            reason = study.trials[trial.number].user_attrs.get("status", "unknown")
            raise RunError(f"{failures_in_a_row} trials in a row failed (last: trial {trial.number}, {reason}); "
                           "check the recipe's training settings")
    return ran


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while handling a Ctrl-C. Optuna's journal lock releases its lock
    file when interrupted while acquiring it, and that release can itself fail (the file was
    never created): the user pressed Ctrl-C but the error that surfaces is a FileNotFoundError."""
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ctrl-C is like a killed process: the trial is failed and retried once on resume."""
    trial.set_user_attr("status", "failed: interrupted (retried on resume)")
    study.tell(trial, state=TrialState.FAIL)
    retry_callback()(study, study._storage.get_trial(trial._trial_id))


def _run_one(study: optuna.Study, trial: optuna.Trial, objective: Objective, heartbeat: bool) -> bool | None:
    """Run and close one trial; returns whether it finished (complete or pruned), or None when
    another worker had already failed it: a worker whose heartbeat lapsed (a machine too busy to
    beat in time, not a dead one) is taken for dead and its trial retried elsewhere, so what this
    worker computed can no longer be stored, and that must not stop the worker either."""
    told: list[bool] = []  # whether this worker closed the trial (a real error then propagates)

    def tell(values: object = None, state: TrialState | None = None) -> None:
        study.tell(trial, values, state=state)
        told.append(True)

    try:
        return _run_and_tell(study, trial, objective, heartbeat, tell)
    except Exception:
        if not told and study._storage.get_trial(trial._trial_id).state.is_finished():
            return None
        raise


def _run_and_tell(study: optuna.Study, trial: optuna.Trial, objective: Objective, heartbeat: bool,
                  tell: Callable[..., None]) -> bool:
    beat = _Heartbeat(study, trial._trial_id) if heartbeat else None
    try:
        if beat:
            beat.__enter__()
        try:
            values = objective(trial)
        finally:
            if beat:
                beat.__exit__()
    except optuna.TrialPruned:
        tell(state=TrialState.PRUNED)
        return True
    except TrialFailed:
        tell(state=TrialState.FAIL)
        return False
    except KeyboardInterrupt:
        _interrupted(study, trial)
        raise
    except OSError as exc:  # disk full, artifact folder gone or unwritable: stop, keep the study
        if _caused_by_ctrl_c(exc):
            _interrupted(study, trial)
            raise KeyboardInterrupt from None
        where = exc.filename or "the artifact folder"
        trial.set_user_attr("status", f"failed: cannot write {where}: {exc.strerror or exc}")
        tell(state=TrialState.FAIL)
        raise RunError(f"{where}: cannot write trial artifacts ({exc.strerror or exc}); "
                       "finished trials are kept, free space or fix the folder and re-run to resume") from None
    except BaseException as exc:
        trial.set_user_attr("status", f"failed: {exc.__class__.__name__}: {str(exc)[:200]}")
        tell(state=TrialState.FAIL)
        raise
    tell(values)
    return True
