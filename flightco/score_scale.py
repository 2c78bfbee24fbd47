"""How stretched the supernet's score is, measured against from-scratch proxy trainings.

A subnet's inherited score (``strategy: supernet``) spreads the search front differently from
stand-alone training: the supernet's small subnets are under-trained, so the score can fall 3-5x
as steeply towards cheap networks as the stand-alone truth, while the per-trial strategy's
1-epoch proxy falls about as the truth does (README, "The cost bias").

When ``search.supernet.score_scale`` is on (it is off by default), once the search has a front a
few of its members spread along the primary cost (the next non-dominated layers too, when the
front is short) are trained from scratch with the recipe's proxy budget. The reduced-major-axis
line of their scores against their proxy accuracies gives the stretch and an offset, and the
finalist rule (flightco/finalists.py) takes its hypervolume on ``offset + score / stretch``: the
supernet's score on the proxy's scale. The points depend on the supernet and the data, not the
hardware (no cost enters the line): they are stored beside the checkpoint (``<key>.scale.json``)
and a sibling run with another profile uses them from its first trial.

It is off by default because on the search benchmark's fronts the mapped score chose the same
finalists as the plain score or worse ones (README, "Finalists by hypervolume"), and the
calibration costs 30-55 s of proxy training inside the search budget. It still measures how far
a supernet's score is from stand-alone training, which is worth knowing about any supernet.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

from flightco.atomic import atomic_path
from flightco.subnet_archive import here_and_in_sibling_runs

SCALE_ATTR = "score_scale"
"""Study attribute: the measured stretch and when it became known (see :func:`summary`)."""
MAX_SCALE = 4.0
"""Upper clip of the stretch."""
REACH = 0.4
"""How far below the best score calibration members may lie, in score points: the part of the
front whose finalists matter, so a near-chance cheap outlier cannot dominate the line."""
MIN_SCALE = 0.5
MIN_CORRELATION = 0.5
"""Below this Pearson r between scores and proxies the points say nothing about a scale."""


@dataclass(frozen=True)
class ScalePoint:
    """One calibration subnet: its search score and its from-scratch proxy accuracy."""

    trial: int
    genome: dict[str, Any]
    score: float
    proxy: float
    proxy_s: float


@dataclass(frozen=True)
class ScoreScale:
    """The calibration points of one supernet under one scoring and proxy setting."""

    settings: dict[str, Any]
    points: list[ScalePoint]


def scale_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".scale.json")


def scale_settings(ctx: Any, score_settings: Any) -> dict[str, Any]:
    """What the points depend on besides the checkpoint: points measured otherwise are not reused."""
    return {"score": asdict(score_settings), "proxy": ctx.recipe.training.proxy.model_dump(mode="json"),
            "count": ctx.recipe.search.supernet.score_scale.members}


def read(path: Path) -> ScoreScale | None:
    """The stored calibration, or None when missing or unreadable (then it is measured again)."""
    try:
        blob = json.loads(path.read_text())
        return ScoreScale(settings=blob["settings"], points=[ScalePoint(**p) for p in blob["points"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(path: Path, scale: ScoreScale) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"settings": scale.settings, "points": [asdict(p) for p in scale.points]},
                                        indent=1))


def stored(checkpoint: Path, settings: dict[str, Any]) -> tuple[ScoreScale, Path] | None:
    """This run's calibration or a sibling run's (same supernet, same settings), with its file."""
    for candidate in here_and_in_sibling_runs(scale_path(checkpoint)):
        found = read(candidate) if candidate.is_file() else None
        if found is not None and found.settings == settings:
            return found, candidate
    return None


def within_reach(trials: Sequence[Any], acc_index: int) -> list[Any]:
    """The trials within ``REACH`` of the best score."""
    best = max((t.values[acc_index] for t in trials), default=0.0)
    return [t for t in trials if t.values[acc_index] >= best - REACH]


def ranked_candidates(scored: Sequence[Any], directions: Sequence[Any], acc_index: int, count: int) -> list[Any]:
    """The front of the scored trials, then its next non-dominated layers while fewer than
    ``count`` lie within reach: a short front (a small search) still yields calibration members
    among the best-ranked subnets, and a long one is used alone."""
    pool, chosen = list(scored), []
    while pool and len(within_reach(chosen, acc_index)) < count:
        layer = _get_pareto_front_trials_by_trials(pool, directions, consider_constraint=True)
        if not layer:
            break
        chosen += layer
        taken = {t.number for t in layer}
        pool = [t for t in pool if t.number not in taken]
    return chosen


def calibration_members(candidates: Sequence[Any], acc_index: int, cost_index: int, count: int) -> list[Any]:
    """``count`` candidates spread evenly along the primary cost, among those within reach of
    the best score (see :func:`within_reach`)."""
    near = sorted(within_reach(candidates, acc_index), key=lambda t: t.values[cost_index])
    if len(near) <= count:
        return near
    return [near[round(i * (len(near) - 1) / (count - 1))] for i in range(count)]


def stretch(points: Sequence[ScalePoint]) -> dict[str, Any]:
    """The reduced-major-axis slope of score against proxy accuracy (symmetric in the two noisy
    signals; least squares would shrink it by the proxy's noise share), its Pearson r, the
    clipped scale and the offset of the line through the points' means, so that
    ``offset + score / scale`` is a score on the proxy's scale.
    ``scale`` is 1 (scores only shifted) when the points do not determine a slope."""
    n = len(points)
    raw = r = None
    xs, ys = [p.proxy for p in points], [p.score for p in points]
    mx, my = (sum(xs) / n, sum(ys) / n) if n else (0.0, 0.0)
    if n >= 3:
        sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
        sy = math.sqrt(sum((y - my) ** 2 for y in ys))
        if sx > 0 and sy > 0:
            r = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy)
            raw = math.copysign(sy / sx, r)
    usable = raw is not None and r is not None and r >= MIN_CORRELATION
    scale = min(max(raw, MIN_SCALE), MAX_SCALE) if usable else 1.0
    reason = None if usable else ("fewer than 3 distinct points" if r is None else
                                  f"scores and proxies correlate too weakly (r {r:.2f} < {MIN_CORRELATION})")
    return {"scale": scale, "offset": mx - my / scale, "raw": raw, "r": r, "points": n,
            **({"unused_because": reason} if reason else {})}


def summary(scale: ScoreScale, source: str) -> dict[str, Any]:
    """The study attribute: the stretch, the points' seconds, where they came from and when the
    scale became known to this study (finalists picked from an earlier front did not have it), in
    local time without a zone, as Optuna stamps trials."""
    return {**stretch(scale.points), "seconds": sum(p.proxy_s for p in scale.points), "source": source,
            "known_at": datetime.now().isoformat()}


def measure(candidates: Sequence[Any], acc_index: int, cost_index: int, ctx: Any, settings: dict[str, Any],
            reporter: Any) -> ScoreScale:
    """Train the calibration members from scratch with the proxy budget (the seed of a fresh
    trial of the per-trial strategy would use)."""
    from flightco.search import train_genome
    from flightco.space import Genome

    members = calibration_members(candidates, acc_index, cost_index, settings["count"])
    points = []
    for i, t in enumerate(members):
        genome = Genome.from_dict(t.user_attrs["genome"])
        reporter.stage(f"score scale {i + 1}/{len(members)}: trial {t.number} ({genome.bits_summary()}) "
                       f"trained from scratch, {ctx.recipe.training.proxy.epochs:g} epoch proxy")
        start = time.perf_counter()
        _, result = train_genome(genome, ctx.dataset.train, ctx.dataset.val, ctx.recipe.training.proxy,
                                 ctx.recipe.search.seed * 100_003 + t.number, reporter)
        points.append(ScalePoint(trial=t.number, genome=t.user_attrs["genome"], score=float(t.values[acc_index]),
                                 proxy=float(result.epoch_accuracies[-1]), proxy_s=time.perf_counter() - start))
    return ScoreScale(settings=settings, points=points)
