"""Multi-objective early stopping: the MO-ASHA rule on real Optuna trials, rungs that leave
training unchanged, and a real tiny search that stops trials and records why."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from flightco.early_stop import decide, replay

OBJ = [("accuracy", "maximize"), ("energy_mj", "minimize")]


def test_dominated_trial_is_stopped_and_cheap_one_survives():
    peers = [(0.9, [1.0]), (0.8, [0.5]), (0.7, [0.3]), (0.85, [0.8]), (0.6, [0.2]), (0.75, [0.4])]
    # expensive and inaccurate: every peer dominates it
    bad = decide(0.5, [2.0], peers, rung=0.25, eta=3, min_peers=3)
    assert bad.stop and bad.better == 6 and "better fronts" in bad.reason()
    # inaccurate but cheaper than everything: on the front, goes on
    assert not decide(0.5, [0.1], peers, rung=0.25, eta=3, min_peers=3).stop
    # too few peers yet: never stops
    assert not decide(0.1, [9.0], peers[:2], rung=0.25, eta=3, min_peers=3).stop


def test_eta_sets_how_many_may_be_better():
    peers = [(0.9, [1.0]), (0.8, [1.0]), (0.7, [1.0]), (0.6, [1.0]), (0.5, [1.0])]
    # same cost, so fronts are accuracy ranks; 6 trials ranked: eta 2 keeps the top 3, eta 3 the top 2
    assert decide(0.75, [1.0], peers, 0.5, eta=2, min_peers=1).stop is False  # 3rd: 2 better
    assert decide(0.65, [1.0], peers, 0.5, eta=2, min_peers=1).stop is True  # 4th: 3 better
    assert decide(0.85, [1.0], peers, 0.5, eta=3, min_peers=1).stop is False  # 2nd: 1 better
    assert decide(0.75, [1.0], peers, 0.5, eta=3, min_peers=1).stop is True  # 3rd: 2 better


def _frozen(number, rungs, energy):
    return create_trial(params={"x": number}, distributions={"x": CategoricalDistribution(list(range(100)))},
                        values=[0.0, energy], user_attrs={"rungs": rungs, "metrics": {"energy_mj": energy}},
                        state=TrialState.COMPLETE)


def test_replay_judges_each_trial_against_earlier_ones_only():
    trials = [_frozen(i, {"0.25": 0.5 + 0.05 * i, "0.5": 0.6 + 0.05 * i}, 1.0) for i in range(6)]
    for i, t in enumerate(trials):
        t.number = i
    # a late, expensive, bad trial: stopped at the first rung
    late = _frozen(6, {"0.25": 0.1, "0.5": 0.2}, 5.0)
    late.number = 6
    # an early bad trial is not stopped: nothing was known before it
    early = replay(trials + [late], [0.25, 0.5], OBJ, eta=3, min_peers=3)
    assert 6 in early and early[6].rung == 0.25
    assert 0 not in early and 1 not in early


def test_rungs_do_not_change_training(monkeypatch):
    from flightco.data import load_dataset
    from flightco.nn.mobilenet import build_model
    from flightco.search import sample_any_genome
    from flightco.train import TrainConfig, evaluate, train_qat

    ds = load_dataset("mnist5k", limit_train=512)

    class Ctx:
        dataset = ds
        space = __import__("flightco.space", fromlist=["SearchSpace"]).SearchSpace.load("search_spaces/mobilenet.yaml")

    genome = sample_any_genome(Ctx)
    cfg = TrainConfig(epochs=3, batch_size=64, seed=3)  # 24 steps: rungs fall after the 5 statistics steps
    results = []
    seen: list[tuple[float, float]] = []
    for rungs in ((), (0.25, 0.5)):
        torch.manual_seed(0)
        model = build_model(genome)
        train_qat(model, ds.train, cfg, val=ds.val, rungs=rungs, on_rung=lambda r, a: seen.append((r, a)))
        results.append((evaluate(model, ds.val), [p.detach().clone() for p in model.parameters()]))
    assert [r for r, _ in seen] == [0.25, 0.5] and all(0 <= a <= 1 for _, a in seen)
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


@pytest.mark.slow
def test_search_with_early_stopping_prunes_and_says_why(cli, write_recipe, tmp_path):
    from conftest import tiny_recipe

    from flightco.runs import load_study

    # 16 proxy steps (512 images, batch 32): the rung at step 8 falls after the 5 statistics steps
    recipe = tiny_recipe(dataset={"name": "mnist5k", "limit_train": 512},
                         search={"trials": 4, "population_size": 2, "seed": 0, "sampler": "random",
                                 "early_stopping": {"rungs": [0.5], "eta": 2, "min_peers": 1, "bn_batches": 2}},
                         training={"proxy": {"epochs": 1, "batch_size": 32}, "final": {"epochs": 0.25, "batch_size": 64},
                                   "finalists": 1, "reference_bits": None},
                         constraints=[])
    out = tmp_path / "run"
    proc = cli("optimize", write_recipe(recipe), "--out", out)
    assert proc.returncode == 0, proc.stderr
    _, study = load_study(out)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(pruned) + len(complete) == 4
    assert all("0.5" in t.user_attrs["rungs"] for t in pruned + complete if "proxy" in t.user_attrs or t in pruned)
    assert pruned, "with eta 2 and one peer needed, a dominated trial must be stopped"
    assert all(t.user_attrs["status"].startswith("pruned: ") for t in pruned)
    assert f"early stopping stopped {len(pruned)} of" in proc.stdout
    table = cli("pareto", out, "--all")
    assert table.returncode == 0 and "pruned" in table.stdout and "hypervolume (reference accuracy 0" in table.stdout


def test_stopped_trials_are_the_pruned_ones_with_a_reason_and_their_twins_are_found():
    from flightco.early_stop import stopped_trials
    from flightco.search import _find_pruned_twin
    from flightco.space import SearchSpace, sample_genome
    from conftest import SPACE

    space = SearchSpace.load(SPACE)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    genomes = []
    for status, state in [("pruned: stopped on its inherited accuracy, before fine-tuning", TrialState.PRUNED),
                          ("failed: budget reached", TrialState.PRUNED), ("trained", TrialState.COMPLETE)]:
        t = study.ask()
        g = sample_genome(t, space, in_channels=1, resolution=28, num_classes=10)
        genomes.append(g)
        t.set_user_attr("genome", g.to_dict())
        t.set_user_attr("status", status)
        study.tell(t, [0.5, 1.0] if state == TrialState.COMPLETE else None, state=state)
    assert [t.number for t in stopped_trials(study)] == [0]
    assert _find_pruned_twin(study, genomes[0]).number == 0
    assert _find_pruned_twin(study, genomes[1]) is None  # pruned, but not by early stopping
    assert _find_pruned_twin(study, genomes[2]) is None  # trained
