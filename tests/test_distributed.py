"""Distributed search on a real PostgreSQL server, and crash safety with SIGKILL.

The server is started by the tests on loopback (Debian's postgresql package, installed by
.ci/run); where it truly cannot start, the PostgreSQL tests skip and say why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import tiny_recipe
from pg import PostgresServer

pytestmark = pytest.mark.slow

FAST_HEARTBEAT = {"FLIGHTCO_HEARTBEAT_S": "1", "FLIGHTCO_GRACE_S": "4"}


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = PostgresServer()
    why = server.available()
    if why:
        pytest.skip(f"PostgreSQL cannot start here: {why}")
    url = server.start()
    yield url
    server.stop()


def _spawn(*args: str, env_extra: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="200", **(env_extra or {}))
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "flightco.cli", *map(str, args)], env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def _study(url: str, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return None


def _journal_study(out: Path) -> optuna.Study | None:
    """The run's study as another process is writing it; None until the study exists."""
    if not (out / "study.journal").is_file():
        return None
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    try:
        return optuna.load_study(study_name="tiny", storage=storage)
    except KeyError:  # the file is there, the study record not yet
        return None


def _recipe(tmp_path, **training) -> Path:
    train = {"proxy": {"epochs": 0.25, "batch_size": 64}, "final": {"epochs": 0.25}, "finalists": 0}
    train.update(training)
    path = tmp_path / "recipe.yaml"
    # one torch thread per process: four processes on two cores with two threads each spend most of
    # their time in OpenMP spin-waits (the four-worker test took ~3 min that way, not ~1)
    path.write_text(yaml.safe_dump(tiny_recipe(training=train, constraints=[], threads=1)))
    return path


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    return [p.wait(timeout=timeout) for p in procs]


def test_four_workers_share_one_study_exactly(postgres, tmp_path):
    # trials of a few seconds, so the first process cannot finish them all before the others start
    recipe = _recipe(tmp_path, proxy={"epochs": 1, "batch_size": 32})
    budget = 8
    procs = [_spawn("optimize", recipe, "--storage", postgres, "--study", "four", "--trials", budget,
                    "--out", tmp_path / "run", log=tmp_path / "optimize.log")]
    _wait_for(lambda: _study(postgres, "four") is not None and "budget" in _study(postgres, "four").user_attrs,
              120, "the study to be created")
    procs += [_spawn("worker", "--storage", postgres, "--study", "four", log=tmp_path / f"w{i}.log") for i in range(3)]
    codes = _finish(procs)
    logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
    assert codes == [0, 0, 0, 0], logs
    study = _study(postgres, "four")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == budget
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in study.trials:
        if t.state == TrialState.FAIL:
            assert "budget reached" in t.user_attrs.get("status", "")  # only race losers, never trained
    workers = {t.user_attrs["worker"] for t in complete}
    assert len(workers) >= 2, "trials should be spread over several worker processes"


def test_killed_worker_trial_is_failed_then_retried(postgres, tmp_path):
    recipe = _recipe(tmp_path, proxy={"epochs": 2, "batch_size": 32})
    budget = 6
    procs = [_spawn("optimize", recipe, "--storage", postgres, "--study", "kill", "--trials", budget,
                    "--out", tmp_path / "run", env_extra=FAST_HEARTBEAT, log=tmp_path / "optimize.log")]
    _wait_for(lambda: _study(postgres, "kill") is not None and "budget" in _study(postgres, "kill").user_attrs,
              120, "the study to be created")
    workers = [_spawn("worker", "--storage", postgres, "--study", "kill", env_extra=FAST_HEARTBEAT,
                      log=tmp_path / f"w{i}.log") for i in range(3)]
    victim = workers[0]

    def victim_trial():
        for t in _study(postgres, "kill").get_trials(states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{victim.pid}") and "genome" in t.user_attrs:
                return t
        return None

    running = _wait_for(victim_trial, 180, "the victim worker to start a trial")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    codes = _finish([procs[0], *workers[1:]])
    assert codes == [0, 0, 0], {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
    study = _study(postgres, "kill")
    killed = study.trials[running.number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == running.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == budget


def test_worker_refuses_different_code_and_unknown_study(postgres, tmp_path, cli):
    recipe = _recipe(tmp_path)
    proc = cli("optimize", recipe, "--storage", postgres, "--study", "code", "--trials", 1, "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    study = _study(postgres, "code")
    study.set_user_attr("code", "0000000000000000")
    proc = cli("worker", "--storage", postgres, "--study", "code")
    assert proc.returncode == 2 and "different flightco code" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("worker", "--storage", postgres, "--study", "nope")
    assert proc.returncode == 2 and "no study named 'nope'" in proc.stderr


def test_storage_that_does_not_answer_is_one_line_error(cli, tmp_path):
    recipe = _recipe(tmp_path)
    proc = cli("optimize", recipe, "--storage", "postgresql://nobody@127.0.0.1:1/none", "--out", tmp_path / "r")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open" in lines[0] and "Traceback" not in proc.stderr


def test_sigkill_then_same_command_resumes_with_finished_trials_intact(tmp_path, cli):
    recipe = _recipe(tmp_path, proxy={"epochs": 1, "batch_size": 32})
    out = tmp_path / "run"
    budget = 5
    proc = _spawn("optimize", recipe, "--trials", budget, "--out", out, log=tmp_path / "first.log")

    def two_done():
        study = _journal_study(out)
        if study is None:
            return None
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        running = [t for t in study.trials if t.state == TrialState.RUNNING and "genome" in t.user_attrs]
        return study if len(done) >= 2 and running else None

    _wait_for(two_done, 240, "two finished trials and one running")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from flightco.runs import load_study

    _, before = load_study(out)
    kept = {t.number: (t.params, t.values, t.user_attrs.get("proxy")) for t in before.trials if t.state == TrialState.COMPLETE}
    orphan = [t.number for t in before.trials if t.state == TrialState.RUNNING]
    assert kept and orphan

    again = cli("optimize", recipe, "--trials", budget, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "left running by a process that died" in again.stdout
    _, after = load_study(out)
    assert {n: (after.trials[n].params, after.trials[n].values, after.trials[n].user_attrs.get("proxy")) for n in kept} == kept
    for n in orphan:
        assert after.trials[n].state == TrialState.FAIL
        assert any(t.system_attrs.get("failed_trial") == n and t.state == TrialState.COMPLETE for t in after.trials)
    assert len([t for t in after.trials if t.state == TrialState.COMPLETE]) == budget


def test_second_process_on_same_journal_run_is_refused(tmp_path, cli):
    from flightco.runs import exclusive_run_lock

    recipe = _recipe(tmp_path)
    out = tmp_path / "run"
    with exclusive_run_lock(out):
        proc = cli("optimize", recipe, "--out", out)
    assert proc.returncode == 2 and "another flightco process" in proc.stderr


def test_diverging_trials_are_recorded_as_failed_and_the_search_goes_on(tmp_path, cli):
    from flightco.runs import load_study
    from flightco.study import MAX_CONSECUTIVE_FAILURES

    recipe = _recipe(tmp_path, proxy={"epochs": 0.5, "batch_size": 32, "lr": 1e12})
    out = tmp_path / "run"
    proc = cli("optimize", recipe, "--out", out, "--trials", 3)
    assert proc.returncode == 2 and "in a row failed" in proc.stderr and "diverged" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    _, study = load_study(out)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == MAX_CONSECUTIVE_FAILURES  # it went on after each failure
    assert all("training diverged" in t.user_attrs["status"] for t in failed)


def test_artifact_folder_that_breaks_mid_run_is_one_line_error(tmp_path, cli):
    from flightco.runs import load_study

    recipe = _recipe(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "trials").write_text("not a folder")  # weights cannot be saved under it
    proc = cli("optimize", recipe, "--out", out, "--trials", 2)
    assert proc.returncode == 2 and "cannot write trial artifacts" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    _, study = load_study(out)
    assert study.trials and study.trials[-1].state == TrialState.FAIL


def test_ctrl_c_stops_cleanly_and_keeps_finished_trials(tmp_path):
    recipe = _recipe(tmp_path, proxy={"epochs": 1, "batch_size": 32})
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "flightco.cli", "optimize", str(recipe), "--out", str(out), "--trials", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def one_done():
        study = _journal_study(out)
        return study is not None and any(t.state == TrialState.COMPLETE for t in study.trials)

    _wait_for(one_done, 240, "a finished trial")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and "run the same command to resume" in err
    from flightco.runs import load_study

    _, study = load_study(out)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def _taken_over(study, trial) -> None:
    """What another worker does to a trial whose heartbeat lapsed: fail it through its own handle."""
    import optuna

    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
    other._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


@pytest.mark.parametrize("touch_after", [True, False])
def test_a_slow_worker_whose_trial_was_failed_elsewhere_drops_its_result_and_goes_on(tmp_path, touch_after):
    """Under heavy load a live worker can miss its heartbeats; another worker then fails its trial
    and retries it. The slow worker must not die when its own writes meet the finished trial
    (``set_user_attr`` raises UpdateFinishedTrialError, ``tell`` a ValueError): ``_run_one`` says
    None (neither finished here nor a failure of the recipe). A real error in a trial nobody else
    touched still propagates, with the trial failed and its cause recorded."""
    import optuna

    from flightco.study import _run_one

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])

    def slow(trial):
        trial.set_user_attr("genome", {"stem": 8})
        _taken_over(study, trial)
        if touch_after:
            trial.set_user_attr("metrics", {"energy_mj": 1.0})
        return 0.9, 1.0

    trial = study.ask()
    assert _run_one(study, trial, slow, heartbeat=False) is None
    assert study.trials[trial.number].state == TrialState.FAIL

    def broken(trial):
        raise RuntimeError("a real bug")

    trial = study.ask()
    with pytest.raises(RuntimeError, match="a real bug"):
        _run_one(study, trial, broken, heartbeat=False)
    assert study.trials[trial.number].state == TrialState.FAIL
    assert "a real bug" in study.trials[trial.number].user_attrs["status"]
