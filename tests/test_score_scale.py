"""The supernet score's stretch against from-scratch proxies: the line and its guards, which front
members are calibrated, the stored points and their reuse, and the mapped score the finalist
rule uses on a real Optuna study (the rule itself: tests/test_finalists.py)."""

from __future__ import annotations

import json
import random

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from flightco import score_scale as ss
from flightco.finalists import choose_finalists


def _point(score: float, proxy: float, trial: int = 0) -> ss.ScalePoint:
    return ss.ScalePoint(trial=trial, genome={"g": trial}, score=score, proxy=proxy, proxy_s=1.0)


def _trial(number: int, accuracy: float, cost: float) -> optuna.trial.FrozenTrial:
    t = create_trial(values=[accuracy, cost], params={"x": cost}, distributions={"x": FloatDistribution(0, 10)},
                     user_attrs={"genome": {"n": number}, "proxy": {"val_accuracy": accuracy}})
    t.number = number
    return t


@pytest.mark.parametrize("stretch", [1.0, 1.6, 3.0])
def test_the_slope_recovers_a_known_stretch_through_noise_in_both_signals(stretch):
    rng = random.Random(1)
    truth = [0.55 + 0.05 * i for i in range(6)]
    points = [_point(0.8 - stretch * (0.8 - t) + rng.gauss(0, 0.01), t + rng.gauss(0, 0.01), i)
              for i, t in enumerate(truth)]
    got = ss.stretch(points)
    assert got["r"] > 0.9 and "unused_because" not in got
    assert got["scale"] == pytest.approx(stretch, rel=0.15)
    # the mapped score lands back on the proxy's scale: the best score maps to about 0.8
    assert got["offset"] + 0.8 / got["scale"] == pytest.approx(0.8, abs=0.03)


def test_least_squares_would_shrink_the_stretch_more_than_the_symmetric_slope():
    """With the proxy as noisy as the score, regressing score on proxy attenuates the slope by
    var(truth) / (var(truth) + var(noise)), about 0.79 here; the reduced-major-axis slope, whose
    errors in the two signals partly cancel, keeps most of it (why the calibration uses it)."""
    rng = random.Random(7)
    truth = [rng.uniform(0.6, 0.8) for _ in range(200)]
    points = [_point(0.8 - 2.0 * (0.8 - t) + rng.gauss(0, 0.03), t + rng.gauss(0, 0.03)) for t in truth]
    xs, ys = [p.proxy for p in points], [p.score for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    ols = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert ols < 1.65 and 1.75 < ss.stretch(points)["scale"] < 2.1


def test_the_scale_is_clipped_and_left_at_one_when_the_points_say_nothing():
    steep = [_point(0.8 - 10 * (0.8 - p), p) for p in (0.70, 0.75, 0.80)]
    assert ss.stretch(steep)["scale"] == ss.MAX_SCALE and ss.stretch(steep)["raw"] == pytest.approx(10)
    flat = [_point(0.8 - 0.1 * (0.8 - p), p) for p in (0.5, 0.65, 0.80)]
    assert ss.stretch(flat)["scale"] == ss.MIN_SCALE
    unrelated = [_point(s, p) for s, p in ((0.5, 0.7), (0.7, 0.5), (0.6, 0.72), (0.55, 0.52))]
    got = ss.stretch(unrelated)
    assert got["scale"] == 1.0 and "correlate too weakly" in got["unused_because"]
    assert ss.stretch([_point(0.5, 0.6), _point(0.7, 0.8)])["scale"] == 1.0
    assert ss.stretch([_point(0.5, 0.6)] * 3)["unused_because"] == "fewer than 3 distinct points"


def test_calibration_members_spread_along_the_cost_within_reach_of_the_best_score():
    front = [_trial(i, acc, cost) for i, (acc, cost) in enumerate(
        [(0.20, 0.01), (0.45, 0.02), (0.55, 0.03), (0.60, 0.04), (0.65, 0.05), (0.70, 0.07), (0.75, 0.10)])]
    chosen = ss.calibration_members(front, 0, 1, 3)
    # the near-chance #0 lies beyond REACH below the best and is never a calibration point
    assert [t.number for t in chosen] == [1, 3, 6]
    assert [t.number for t in ss.calibration_members(front, 0, 1, 10)] == [1, 2, 3, 4, 5, 6]


def test_a_short_front_is_topped_up_from_the_next_non_dominated_layers():
    directions = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    trials = [_trial(0, 0.70, 0.10), _trial(1, 0.60, 0.02), _trial(2, 0.65, 0.12), _trial(3, 0.50, 0.05),
              _trial(4, 0.40, 0.11), _trial(5, 0.55, 0.03)]
    # front: #0, #1; second layer: #2, #5, #3 (#3 is dominated by #5 and waits for a third layer)
    assert {t.number for t in ss.ranked_candidates(trials, directions, 0, 2)} == {0, 1}
    assert {t.number for t in ss.ranked_candidates(trials, directions, 0, 3)} == {0, 1, 2, 5}
    assert {t.number for t in ss.ranked_candidates(trials, directions, 0, 5)} == {0, 1, 2, 3, 5}
    assert {t.number for t in ss.ranked_candidates(trials, directions, 0, 9)} == set(range(6))


def test_stored_points_are_reused_by_sibling_runs_only_under_the_same_settings(tmp_path):
    settings = {"score": {"finetune_steps": 25}, "proxy": {"epochs": 1}, "count": 3}
    mine = tmp_path / "runs" / "a" / "supernet" / "k.pt"
    sibling = tmp_path / "runs" / "b" / "supernet" / "k.pt"
    assert ss.stored(mine, settings) is None
    points = [_point(0.5 + 0.1 * i, 0.6 + 0.05 * i, i) for i in range(3)]
    ss.write(ss.scale_path(sibling), ss.ScoreScale(settings, points))
    found, where = ss.stored(mine, settings)
    assert where == ss.scale_path(sibling) and found.points == points
    assert ss.stored(mine, {**settings, "proxy": {"epochs": 2}}) is None  # other proxy budget: measured again
    ss.scale_path(sibling).write_text(json.dumps({"settings": settings, "points": [{"trial": 1}]}))
    assert ss.stored(mine, settings) is None  # unreadable: measured again, never a crash


def test_optimize_chooses_its_finalists_on_the_studys_mapped_score():
    """Like stop 28's Eyeriss front. On the raw supernet score the most accurate member's 0.731 looks
    much better than the cheap members; mapped onto the proxy's scale with a stretch of 2 the
    differences halve, and the cheapest member adds the most hypervolume."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "energy_mj"])
    study.set_user_attr("hypervolume_reference", {"accuracy": 0.0, "energy_mj": 0.0195})
    for acc, cost in ((0.731, 0.0083), (0.673, 0.0046), (0.44, 0.0028)):
        study.add_trial(create_trial(values=[acc, cost], user_attrs={"genome": {}, "proxy": {}}))
    assert [t.values[1] for t in choose_finalists(study, 2)] == [0.0083, 0.0046]
    study.set_user_attr(ss.SCALE_ATTR, {"scale": 2.0, "offset": 0.40})  # stretch 2, best score -> 0.765
    assert [t.values[1] for t in choose_finalists(study, 2)] == [0.0083, 0.0028]
    study.set_user_attr(ss.SCALE_ATTR, {"scale": 2.0})  # a stop-29 attribute without an offset: the raw score
    assert [t.values[1] for t in choose_finalists(study, 2)] == [0.0083, 0.0046]
