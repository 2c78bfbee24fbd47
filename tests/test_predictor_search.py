"""The accuracy predictor and the predictor-guided queue of the supernet strategy, on real
genomes of the default space, a real Optuna study and a score whose shape is known."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from flightco.accuracy_predictor import cross_validated_tau, make_predictor, subnet_features
from flightco.metrics import genome_metrics
from flightco.predictor_search import PREDICTED_ATTR, PREDICTOR_ATTR, due, queue_predicted_front, queued_params
from flightco.recipe import load_recipe
from flightco.search import QuietReporter, load_context, make_genome
from flightco.space import SearchSpace
from flightco.subnet_archive import ScoreSettings, SubnetRecord

from conftest import SPACE, random_genomes, tiny_recipe


def _known_score(features: dict[str, float]) -> float:
    """A made-up accuracy with the shape measured ones have: rising with size, falling at low bits."""
    return (0.2 + 0.04 * features["log_macs"] + 0.02 * features["mac_weighted_w_bits"]
            + 0.015 * min(features["min_a_bits"], 8))


def _random_subnets(n: int, seed: int = 0) -> list[tuple[dict, object]]:
    return random_genomes(SearchSpace.load(SPACE), n, seed)


def test_features_read_every_choice_and_the_size_and_precision_aggregates():
    (params, genome), = _random_subnets(1, seed=4)
    f = subnet_features({**params, "stem.w_bits": "float"}, genome)
    assert f["stem.w_bits"] == 32.0 and f["s1.depth"] == params["s1.depth"]
    assert math.isclose(math.exp(f["log_macs"]), genome_metrics(genome, [])["macs"], rel_tol=0.05)
    assert 2 <= f["min_w_bits"] <= f["mac_weighted_w_bits"] <= 32


def test_predictor_ranks_held_out_subnets_of_a_known_score():
    subnets = _random_subnets(80)
    features = [subnet_features(p, g) for p, g in subnets]
    scores = [_known_score(f) for f in features]
    assert cross_validated_tau(features, scores) > 0.7
    # and it is an ordinary sklearn estimator: a shuffled target leaves nothing to learn
    shuffled = scores[7:] + scores[:7]
    assert cross_validated_tau(features, shuffled) < 0.3
    fitted = make_predictor().fit(features[:60], scores[:60])
    assert fitted.predict(features[60:]).shape == (20,)


def test_a_fit_is_due_at_min_records_and_again_when_they_double():
    assert not due([], 39, 40) and due([], 40, 40)
    assert not due([{"records": 50}], 99, 40) and due([{"records": 50}], 100, 40)


@pytest.fixture
def ctx(tmp_path, write_recipe):
    recipe = tiny_recipe(search={"trials": 3, "population_size": 2, "seed": 0, "strategy": "supernet",
                                 "supernet": {"predictor": {"min_records": 30, "enqueue": 5, "samples": 300}}})
    return load_context(load_recipe(write_recipe(recipe)), tmp_path / "run")


def test_predicted_front_is_queued_feasible_spread_and_better_than_what_it_learned_from(ctx):
    from flightco.hypervolume import hypervolume

    settings = ScoreSettings(64, 0, 1e-3)
    records = []
    for params, genome in _random_subnets(60, seed=1):
        records.append(SubnetRecord(params, genome.to_dict(), settings, None,
                                    _known_score(subnet_features(params, genome))))
    study = optuna.create_study(directions=["maximize", "minimize"])
    fit = queue_predicted_front(study, ctx, records, QuietReporter())
    assert fit is not None and fit["records"] == 60 and fit["cv_kendall_tau"] > 0.6
    assert fit["candidates"] == 300
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert 2 <= len(waiting) == fit["queued"] <= 5
    assert study.user_attrs[PREDICTOR_ATTR] == [fit]

    queued = []
    for t in waiting:
        params = queued_params(t)
        genome = make_genome(optuna.trial.FixedTrial(params), ctx)
        metrics = genome_metrics(genome, ctx.profiles)
        assert metrics["memory_kb"] <= 200  # the recipe's constraint
        queued.append((_known_score(subnet_features(params, genome)), metrics["energy_mj"],
                       t.user_attrs[PREDICTED_ATTR]))
    energies = sorted(e for _, e, _ in queued)
    assert energies[0] < energies[-1]  # spread along the cost, not bunched

    learned = [(r.accuracy, genome_metrics(_genome(r, ctx), ctx.profiles)["energy_mj"]) for r in records]
    feasible = [p for p, r in zip(learned, records)
                if genome_metrics(_genome(r, ctx), ctx.profiles)["memory_kb"] <= 200]
    nadir = [min(a for a, _ in feasible), max(e for _, e in feasible)]

    def hv(points):
        return hypervolume([[a, e] for a, e in points], ["maximize", "minimize"], nadir)

    # five queued subnets cover nearly what the front of all sixty measured ones covers; five
    # measured ones drawn at random (what NSGA-II's first generation would be) cover much less
    assert hv([(a, e) for a, e, _ in queued]) >= 0.95 * hv(feasible)
    assert hv([(a, e) for a, e, _ in queued]) > 1.2 * hv(feasible[:5])

    # nothing new to learn from: no second fit, nothing queued twice
    assert queue_predicted_front(study, ctx, records, QuietReporter()) is None
    assert len(study.get_trials(states=(TrialState.WAITING,))) == len(waiting)


def _genome(record, ctx):
    return make_genome(optuna.trial.FixedTrial(record.params), ctx)
