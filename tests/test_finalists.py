"""The finalist rule (flightco/finalists.py): the most accurate front member, then the members
that add the most hypervolume, on real Optuna trials and studies."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import create_trial

from flightco.finalists import choose_finalists, fallback_reference, pick_finalists
from flightco.hypervolume import hypervolume

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
OBJECTIVES, DIRECTIONS = ["accuracy", "energy_mj"], [MAX, MIN]
# seed 1's BitFusion supernet front at 0.3 of the search benchmark's time (score, mJ), reference 0.312 mJ
SEED1_FRONT = {0: (0.501, 0.0473), 18: (0.518, 0.0537), 15: (0.520, 0.0821), 21: (0.564, 0.1059),
               8: (0.657, 0.138), 22: (0.681, 0.143), 17: (0.699, 0.257)}
SEED1_REF = {"accuracy": 0.0, "energy_mj": 0.312}


def _trial(number: int, *values: float) -> optuna.trial.FrozenTrial:
    t = create_trial(values=list(values), params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)},
                     user_attrs={"genome": {"n": number}, "proxy": {}})
    t.number = number
    return t


def _front(members: dict[int, tuple[float, ...]]) -> list[optuna.trial.FrozenTrial]:
    return [_trial(n, *v) for n, v in members.items()]


def test_the_most_accurate_comes_first_then_the_largest_hypervolume_gain():
    front = _front(SEED1_FRONT)
    picked = pick_finalists(front, OBJECTIVES, DIRECTIONS, 2, SEED1_REF)
    # the old 10-point window took #8 (0.138 mJ) beside #17; the cheap end adds far more area
    assert [t.number for t in picked] == [17, 18]
    assert [t.number for t in pick_finalists(front, OBJECTIVES, DIRECTIONS, 1, SEED1_REF)] == [17]
    # greedy: each pick is the best addition to those already chosen, checked against every alternative
    three = pick_finalists(front, OBJECTIVES, DIRECTIONS, 3, SEED1_REF)
    assert [t.number for t in three[:2]] == [17, 18]

    def hv(group):
        return hypervolume([list(t.values) for t in group], ["maximize", "minimize"], [0.0, 0.312])

    assert all(hv(three) >= hv(three[:2] + [t]) for t in front if t not in three)


def test_k_finalists_from_a_front_of_k_or_more_and_never_more_than_the_front():
    front = _front({0: (0.70, 0.15), 1: (0.50, 0.047)})
    assert [t.number for t in pick_finalists(front, OBJECTIVES, DIRECTIONS, 2, SEED1_REF)] == [0, 1]
    assert [t.number for t in pick_finalists(front, OBJECTIVES, DIRECTIONS, 5, SEED1_REF)] == [0, 1]
    assert pick_finalists([], OBJECTIVES, DIRECTIONS, 2, SEED1_REF) == []
    assert pick_finalists(front, OBJECTIVES, DIRECTIONS, 0, SEED1_REF) == []


def test_an_estimate_that_compresses_the_score_credits_the_cheap_members():
    front = _front({0: (0.731, 0.0083), 1: (0.673, 0.0046), 2: (0.44, 0.0028)})
    ref = {"accuracy": 0.0, "energy_mj": 0.0195}
    assert [t.number for t in pick_finalists(front, OBJECTIVES, DIRECTIONS, 2, ref)] == [0, 1]
    halved = pick_finalists(front, OBJECTIVES, DIRECTIONS, 2, ref, estimate=lambda s: 0.4 + s / 2)
    assert [t.number for t in halved] == [0, 2]


def test_every_cost_objective_counts():
    """Two costs: a member that is cheap only in latency still adds volume in the third axis."""
    objectives, directions = ["accuracy", "energy_mj", "latency_ms"], [MAX, MIN, MIN]
    ref = {"accuracy": 0.0, "energy_mj": 1.0, "latency_ms": 10.0}
    front = _front({0: (0.80, 0.5, 5.0), 1: (0.79, 0.49, 5.0), 2: (0.70, 0.9, 1.0)})
    assert [t.number for t in pick_finalists(front, objectives, directions, 2, ref)] == [0, 2]


def test_without_a_stored_reference_the_front_sets_one_and_ties_go_to_the_earlier_trial():
    front = _front({3: (0.7, 0.2), 1: (0.7, 0.2), 2: (0.6, 0.1)})
    assert fallback_reference(front, OBJECTIVES, DIRECTIONS) == pytest.approx({"accuracy": 0.0, "energy_mj": 0.22})
    assert [t.number for t in pick_finalists(front, OBJECTIVES, DIRECTIONS, 2)] == [1, 2]
    assert [t.number for t in pick_finalists(front, ["energy_mj", "latency_ms"], [MIN, MIN], 2)] == [1, 2]


def test_choose_finalists_reads_the_studys_front_and_reference_point():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", OBJECTIVES)
    study.set_user_attr("hypervolume_reference", SEED1_REF)
    for number, (acc, cost) in sorted(SEED1_FRONT.items()):
        study.add_trial(create_trial(values=[acc, cost], user_attrs={"genome": {"n": number}, "proxy": {}}))
    study.add_trial(create_trial(values=[0.40, 0.30], user_attrs={"genome": {}, "proxy": {}}))  # dominated
    picked = choose_finalists(study, 2)
    assert [t.user_attrs["genome"]["n"] for t in picked] == [17, 18]
