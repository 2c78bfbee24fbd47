"""Which front members get the final training: the most accurate, then the most hypervolume.

Final training costs minutes per network, so only ``training.finalists`` (k) members of the
search's front get it. The first is the front's most accurate member, the network a user asks
for first. Each further one is the member whose addition most increases the hypervolume of the
chosen set: the search's accuracy against the exact costs, measured from the run's fixed
reference point (flightco/hypervolume.py), the figure ``flightco pareto`` compares runs by.

Why not a window. The rule before this one took "the cheapest members within 10 proxy points of
the most accurate". Its number of points is arbitrary, it needs converting into every other
score's units (the supernet's inherited score spreads a front 0.85-1.7x as much as the proxy,
flightco/score_scale.py), and when the window held too few members it gave fewer finalists, or
two expensive ones, while a cheap member near the top of the front went untrained. On the search
benchmark's own fronts, re-picked at every point of its time grid at two seeds (README,
"Finalists by hypervolume"), the hypervolume rule gave the same or more stand-alone hypervolume
at 41 of 42 points (1.7 % less at the other) and up to 1.47x where the window left the cheap end
out. It has no parameter.

An accuracy *estimate* may stand in for the search's score: with ``search.supernet.score_scale``
on, the supernet score is mapped onto the from-scratch proxy scale (offset + score / stretch)
before the hypervolume is taken, so a stretched score does not overstate what the expensive
members add.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from flightco.front import proxy_front
from flightco.hypervolume import hypervolume

Estimate = Callable[[float], float]


def _identity(score: float) -> float:
    return score


def fallback_reference(front: Sequence[FrozenTrial], objectives: Sequence[str],
                       directions: Sequence[Any]) -> dict[str, float]:
    """For a study created before reference points were stored: 0 for maximized metrics
    (accuracy), 10 % above the front's worst for minimized costs, so every member encloses some
    volume."""
    return {metric: 0.0 if d.name == "MAXIMIZE" else 1.1 * max(t.values[i] for t in front)
            for i, (metric, d) in enumerate(zip(objectives, directions))}


def pick_finalists(front: Sequence[FrozenTrial], objectives: Sequence[str], directions: Sequence[Any], k: int,
                   reference: Mapping[str, float] | None = None, estimate: Estimate | None = None) -> list[FrozenTrial]:
    """The front's most accurate trial, then, up to ``k``, the trials that add the most
    hypervolume to those chosen (greedy; ties go to the earlier trial).

    ``reference`` maps each objective metric to the reference point's value (the study's
    ``hypervolume_reference``); ``estimate`` maps a search accuracy to the accuracy the
    hypervolume is taken on (default: the score itself)."""
    if not front or k <= 0:
        return []
    if "accuracy" not in objectives:
        return sorted(front, key=lambda t: t.number)[:k]
    acc_i = objectives.index("accuracy")
    estimate = estimate or _identity
    ref = dict(reference) if reference else fallback_reference(front, objectives, directions)
    names = [d.name.lower() for d in directions]
    point = [ref[m] for m in objectives]

    def values(t: FrozenTrial) -> list[float]:
        v = list(t.values)
        v[acc_i] = estimate(v[acc_i])
        return v

    first = max(front, key=lambda t: (t.values[acc_i], -t.number))
    return grow_by_hypervolume([first], [t for t in front if t is not first], k, names, point, values)


def grow_by_hypervolume(chosen: Sequence[FrozenTrial], candidates: Sequence[FrozenTrial], k: int,
                        directions: Sequence[str], point: Sequence[float],
                        values: Callable[[FrozenTrial], list[float]] = lambda t: list(t.values)) -> list[FrozenTrial]:
    """``chosen``, then, up to ``k`` in all, the candidates that add the most hypervolume to those
    chosen, one at a time (ties go to the earlier trial); ``directions`` are "maximize" /
    "minimize", ``point`` the reference point, ``values`` a trial's objective values."""
    chosen, rest = list(chosen), sorted(candidates, key=lambda t: t.number)
    while rest and len(chosen) < k:
        gains = [hypervolume([values(t) for t in chosen + [c]], directions, point) for c in rest]
        chosen.append(rest.pop(max(range(len(rest)), key=lambda i: (gains[i], -i))))
    return chosen


def estimate_from(info: Mapping[str, Any] | None) -> Estimate | None:
    """The supernet score's mapping onto the proxy scale from a ``score_scale`` record (see
    flightco/score_scale.py), or None when there is none or it predates stored offsets."""
    if not info or "offset" not in info:
        return None
    scale, offset = float(info["scale"]), float(info["offset"])
    return lambda score: offset + score / scale


def accuracy_estimate(study: optuna.Study) -> Estimate | None:
    """The study's mapped score (study attribute ``score_scale``), when it measured one."""
    from flightco.score_scale import SCALE_ATTR

    return estimate_from(study.user_attrs.get(SCALE_ATTR))


def choose_finalists(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The finalists of the study's front (see :func:`pick_finalists`) against its stored
    hypervolume reference point."""
    objectives = study.user_attrs.get("objectives", [])
    return pick_finalists(proxy_front(study), objectives, study.directions, k,
                          study.user_attrs.get("hypervolume_reference"), accuracy_estimate(study))
