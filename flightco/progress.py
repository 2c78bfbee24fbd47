"""Rich terminal progress for the search: trials done/total, the current trial's epochs, and
the best front so far."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flightco.space import Genome


class RichReporter:
    """Implements :class:`flightco.search.Reporter` with a live rich progress display."""

    def __init__(self, console: Console, total_trials: int | None, done: int,
                 best: dict[str, float] | None = None) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.trials = self.progress.add_task("trials", total=total_trials, completed=done)
        self.epochs = self.progress.add_task("  training", total=1, visible=False)
        self.best: dict[str, float] = dict(best or {})
        if self.best:
            self.progress.update(self.trials, description=f"trials (best proxy acc {self.best['accuracy']:.3f})")

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def trial_started(self, number: int, genome: Genome, metrics: dict[str, float]) -> None:
        self.progress.update(self.epochs, description=f"  trial {number} {genome.bits_summary()}",
                             completed=0, visible=True)

    def epoch(self, epoch: int, total: int, accuracy: float | None, loss: float) -> None:
        acc = f" acc {accuracy:.3f}" if accuracy is not None else ""
        desc = self.progress.tasks[self.epochs].description.split("  epoch")[0]
        self.progress.update(self.epochs, total=total, completed=epoch, description=f"{desc}  epoch{acc} loss {loss:.3f}")

    def trial_finished(self, row: dict[str, Any]) -> None:
        self.progress.advance(self.trials)
        self.progress.update(self.epochs, visible=False)
        if row.get("feasible") and row.get("accuracy") is not None:
            acc = row["accuracy"]
            if acc > self.best.get("accuracy", -1):
                self.best = {"accuracy": acc, **{k: row[k] for k in ("energy_mj", "latency_ms") if k in row}}
        costs = "  ".join(f"{k} {row[k]:.3g}" for k in ("energy_mj", "latency_ms", "memory_kb") if k in row)
        if row.get("pruned"):
            state = "[cyan]stopped early[/]"
        elif row.get("feasible"):
            state = f"acc {row['accuracy']:.3f}"
        else:
            state = "[yellow]infeasible, not trained[/]"
        self.console.print(f"trial {row['trial']:>3}  {state}  {costs}  {row['bits']}")
        if self.best:
            self.progress.update(self.trials, description=f"trials (best proxy acc {self.best['accuracy']:.3f})")

    def stage(self, text: str) -> None:
        self.progress.update(self.epochs, description=f"  {text}", completed=0, visible=True)
        self.console.print(f"[bold]{text}[/]")


def best_so_far(study: Any) -> dict[str, float]:
    """The most accurate trained trial already in the study (earlier sessions and other workers
    included), so a resumed run's progress line does not forget them."""
    from optuna.trial import TrialState

    best: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        proxy = t.user_attrs.get("proxy")
        if proxy and proxy.get("val_accuracy", -1) > best.get("accuracy", -1):
            metrics = t.user_attrs.get("metrics", {})
            best = {"accuracy": proxy["val_accuracy"], **{k: metrics[k] for k in ("energy_mj", "latency_ms") if k in metrics}}
    return best
