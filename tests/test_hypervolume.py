"""Hypervolume over time against the recipe's fixed reference point (real Optuna studies)."""

from __future__ import annotations

import optuna
import pytest

from flightco.hypervolume import hypervolume, hypervolume_history, reference_point


def test_hypervolume_of_two_points_by_hand():
    # maximize accuracy, minimize energy; reference (0, 2): union of two rectangles
    # 0.9 x (2 - 1) + 0.5 x (2 - 0.2) - overlap 0.5 x (2 - 1) = 0.9 + 0.9 - 0.5
    got = hypervolume([[0.9, 1.0], [0.5, 0.2]], ["maximize", "minimize"], [0.0, 2.0])
    assert got == pytest.approx(1.3)
    # a point beyond the reference adds nothing; an empty front has none
    assert hypervolume([[0.9, 1.0], [0.95, 3.0]], ["maximize", "minimize"], [0.0, 2.0]) == pytest.approx(0.9)
    assert hypervolume([], ["maximize", "minimize"], [0.0, 2.0]) == 0.0


def test_history_follows_completion_order_and_ignores_untrained_trials():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "energy_mj"])
    for acc, energy, trained in [(0.5, 0.2, True), (0.0, 0.1, False), (0.9, 1.0, True), (0.4, 1.5, True)]:
        t = study.ask()
        if trained:
            t.set_user_attr("proxy", {"val_accuracy": acc})
        study.tell(t, [acc, energy])
    hist = hypervolume_history(study, {"accuracy": 0.0, "energy_mj": 2.0})
    assert hist["trial"].tolist() == [0, 1, 2, 3]
    assert hist["hypervolume"].tolist() == pytest.approx([0.9, 0.9, 1.3, 1.3])  # trial 1 untrained, 3 dominated
    assert hist["seconds"].is_monotonic_increasing


def test_reference_point_comes_from_the_recipe(tmp_path):
    from flightco.recipe import load_recipe
    from flightco.search import load_context
    from flightco.hypervolume import largest_network_costs

    recipe = load_recipe("recipes/mobilenet_energy.yaml")
    ctx = load_context(recipe, tmp_path)
    largest = largest_network_costs(ctx)
    ref = reference_point(recipe, largest)
    assert ref["accuracy"] == 0.0
    assert ref["energy_mj"] == pytest.approx(largest["energy_mj"]) and ref["energy_mj"] > 0
    # a constrained cost objective uses its bound; the recipe may set any value itself
    constrained = recipe.model_copy(update={"objectives": [recipe.objectives[0], recipe.objectives[1].model_copy(
        update={"metric": "latency_ms"})]})
    assert reference_point(constrained, largest)["latency_ms"] == 0.1  # the recipe's bound
    given = recipe.model_copy(update={"search": recipe.search.model_copy(update={"hypervolume_reference": {"energy_mj": 1.0}})})
    assert reference_point(given, largest)["energy_mj"] == 1.0
