"""Multi-objective early stopping for per-trial training (Optuna cannot prune MO trials).

Optuna's pruners need ``Trial.report``, which raises for multi-objective studies. flightco knows
something a pruner usually does not: a candidate's *costs* come from the hardware profile before
any training. So a trial can be judged, part-way through its proxy training, against the trials
that already passed the same point, on all objectives at once.

The rule is MO-ASHA's (Schmucker et al., 2021, "Multi-objective asynchronous successive
halving"): at each rung (a fraction of the training steps) the trial's validation accuracy and its
known costs are ranked by non-dominated sorting (Optuna's own NSGA-II ranking) together with every
earlier trial's figures at that rung; the trial goes on only while fewer than ``1/eta`` of the
ranked trials lie in strictly better fronts. A cheap trial with poor accuracy survives when nothing
is both cheaper and more accurate, so stopping never empties the cheap end of a front.

Under ``strategy: supernet`` the same rule gates the fine-tuning of each extracted subnet: the
inherited accuracy (rung 0, :data:`INHERITED_RUNG`) is ranked with the known costs against the
earlier subnets' inherited accuracies, and only the promising ones pay for their fine-tuning steps.

Every trial records its accuracy at each rung (``rungs`` user attribute) whether stopping is on
or not, so a run with stopping off can show offline (:func:`replay`) which trials the rule would
have stopped, and whether any of them reached the final front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import optuna

RUNG_ATTR = "rungs"
INHERITED_RUNG = 0.0
"""The supernet strategy's only rung: a subnet's inherited accuracy before its fine-tuning steps,
the cheap first fidelity of a two-fidelity evaluation (fine-tuning costs about twice as much)."""


@dataclass(frozen=True)
class Decision:
    """What the rule says about one trial at one rung, and why (stored on pruned trials)."""

    stop: bool
    rung: float
    accuracy: float
    better: int  # ranked trials in strictly better non-dominated fronts
    allowed: int  # how many may be better for the trial to go on
    peers: int  # other trials ranked at this rung

    def reason(self) -> str:
        where = ("on its inherited accuracy, before fine-tuning" if self.rung == INHERITED_RUNG
                 else f"at {100 * self.rung:g}% of its proxy training")
        return (f"stopped {where}: accuracy {self.accuracy:.3f}; "
                f"{self.better} of {self.peers + 1} trials at this point are in better fronts "
                f"(accuracy x known costs), more than 1/eta allows ({self.allowed})")


def _ranks(points: np.ndarray) -> np.ndarray:
    """Non-domination ranks (0 = Pareto front) of rows to *minimize*, by Optuna's NSGA-II code."""
    from optuna.study._multi_objective import _fast_non_domination_rank

    return np.asarray(_fast_non_domination_rank(points))


def decide(accuracy: float, costs: Sequence[float], peers: Sequence[tuple[float, Sequence[float]]],
           rung: float, eta: int, min_peers: int) -> Decision:
    """Judge a trial with ``accuracy`` at ``rung`` and minimized ``costs`` against ``peers``
    (``(accuracy, costs)`` of earlier trials at the same rung)."""
    n = len(peers)
    if n < min_peers:
        return Decision(False, rung, accuracy, 0, n, n)
    rows = np.array([[-accuracy, *costs]] + [[-a, *c] for a, c in peers], dtype=float)
    ranks = _ranks(rows)
    better = int(np.sum(ranks < ranks[0]))
    allowed = max(1, (n + 1) // eta)
    return Decision(better >= allowed, rung, accuracy, better, allowed, n)


def cost_vector(metrics: Mapping[str, float], objectives: Sequence[tuple[str, str]]) -> list[float]:
    """The non-accuracy objectives of a trial as values to minimize."""
    return [metrics[m] if d == "minimize" else -metrics[m] for m, d in objectives if m != "accuracy"]


def stopped_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials early stopping stopped: pruned with a ``pruned: ...`` status (the rule's reason,
    or a duplicate of a stopped genome), read without copying them."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
            if str(t.user_attrs.get("status", "")).startswith("pruned")]


def rung_key(rung: float) -> str:
    return f"{rung:g}"


def peers_at(trials: Sequence[object], rung: float, objectives: Sequence[tuple[str, str]],
             exclude: int | None = None, before: int | None = None) -> list[tuple[float, list[float]]]:
    """``(accuracy at rung, costs)`` of every trial that recorded ``rung`` (frozen Optuna trials).

    ``before`` keeps only trials numbered below it (the replay's view of what was known then)."""
    out = []
    key = rung_key(rung)
    for t in trials:
        number = getattr(t, "number")
        if number == exclude or (before is not None and number >= before):
            continue
        attrs = getattr(t, "user_attrs")
        acc = attrs.get(RUNG_ATTR, {}).get(key)
        metrics = attrs.get("metrics")
        if acc is None or not metrics:
            continue
        out.append((float(acc), cost_vector(metrics, objectives)))
    return out


def replay(trials: Sequence[object], rungs: Sequence[float], objectives: Sequence[tuple[str, str]],
           eta: int, min_peers: int) -> dict[int, Decision]:
    """Which trials of a finished run the rule would have stopped, judging each one only against
    the trials numbered before it (as a sequential run would have). Returns trial -> decision."""
    stopped: dict[int, Decision] = {}
    ordered = sorted(trials, key=lambda t: getattr(t, "number"))
    for t in ordered:
        attrs = getattr(t, "user_attrs")
        record = attrs.get(RUNG_ATTR, {})
        if not record or not attrs.get("metrics"):
            continue
        costs = cost_vector(attrs["metrics"], objectives)
        for rung in rungs:
            acc = record.get(rung_key(rung))
            if acc is None:
                break
            # peers: earlier trials the rule had not stopped before this rung
            peers = [p for p in ordered if getattr(p, "number") < getattr(t, "number")
                     and not (getattr(p, "number") in stopped and stopped[getattr(p, "number")].rung < rung)]
            d = decide(float(acc), costs, peers_at(peers, rung, objectives), rung, eta, min_peers)
            if d.stop:
                stopped[getattr(t, "number")] = d
                break
    return stopped
