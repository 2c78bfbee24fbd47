"""Search the supernet through an accuracy predictor, then measure only its predicted front.

Once the supernet's archive (:mod:`flightco.subnet_archive`) holds ``min_records`` scored subnets
(this run's, or those of an earlier search of the same supernet for another hardware target),
a predictor (:mod:`flightco.accuracy_predictor`) is fitted on them. An in-memory Optuna study with
the run's own objectives, constraints and NSGA-II then evaluates ``samples`` candidates in
seconds: predicted accuracy, and costs from the hardware profiles, which are exact and cheap. Its
feasible front, thinned to ``enqueue`` subnets spread along the primary cost, is queued in the
real study (``Study.enqueue_trial``), where each is scored for real; NSGA-II then breeds from
them. The predictor is refitted each time the archive doubles. This is Once-for-All's and APQ's
use of a predictor, with the real measurement kept as the judge of every trial that is stored.

Each fit is stored in the study's ``accuracy_predictor`` user attribute (records used, the
k-fold Kendall tau of its held-out predictions, candidates scored, front size, queued, seconds),
and each queued trial carries ``predicted_accuracy``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import optuna
from optuna.study._multi_objective import _get_pareto_front_trials_by_trials
from optuna.trial import FrozenTrial, TrialState

from flightco.accuracy_predictor import cross_validated_tau, make_predictor, subnet_features
from flightco.metrics import genome_metrics
from flightco.space import Genome
from flightco.subnet_archive import ArchiveReader, SubnetRecord, archives_for

PREDICTOR_ATTR = "accuracy_predictor"
PREDICTED_ATTR = "predicted_accuracy"
GENERATION = 50
"""Candidates per NSGA-II generation of the in-memory search, scored by the predictor in one batch."""


def due(history: list[dict[str, Any]], records: int, min_records: int) -> bool:
    """A fit is due at ``min_records`` scored subnets and again each time they double."""
    last = history[-1]["records"] if history else 0
    return records >= max(min_records, 2 * last)


def scored_records(checkpoint: Any, settings: Any, reader: ArchiveReader | None = None) -> list[SubnetRecord]:
    """The archive's subnets that have the search's score (not those stopped before fine-tuning);
    a search passes its ArchiveReader, which parses only what was appended since its last call."""
    records = (reader or ArchiveReader()).load(archives_for(checkpoint), settings)
    return [r for r in records if r.accuracy is not None]


def queue_predicted_front(study: optuna.Study, ctx: Any, records: list[SubnetRecord],
                          reporter: Any) -> dict[str, Any] | None:
    """Fit on ``records`` (scored subnets of this supernet), search and queue, when a fit is due;
    returns what was done (also stored on the study)."""
    from flightco.search import make_genome

    spec = ctx.recipe.search.supernet.predictor
    if spec is None or "accuracy" not in [o.metric for o in ctx.recipe.objectives]:
        return None
    history = list(study.user_attrs.get(PREDICTOR_ATTR, []))
    if not due(history, len(records), spec.min_records):
        return None
    start = time.perf_counter()
    seed = ctx.recipe.search.seed + len(history)
    features = [subnet_features(r.params, Genome.from_dict(r.genome)) for r in records]
    scores = [float(r.accuracy) for r in records]
    tau = cross_validated_tau(features, scores, seed)
    predictor = make_predictor(seed).fit(features, scores)

    objectives = ctx.recipe.objectives
    constraints = ctx.recipe.constraints
    inner = optuna.create_study(directions=[o.direction for o in objectives],
                                sampler=optuna.samplers.NSGAIISampler(population_size=GENERATION, seed=seed))
    for _ in range(max(1, spec.samples // GENERATION)):
        trials = [inner.ask() for _ in range(GENERATION)]
        genomes = [make_genome(t, ctx) for t in trials]
        metrics = [genome_metrics(g, ctx.profiles) for g in genomes]
        predicted = predictor.predict([subnet_features(t.params, g) for t, g in zip(trials, genomes)])
        for trial, m, acc in zip(trials, metrics, predicted):
            for c in constraints:
                trial.set_constraint(str(c), c.violation(m[c.metric]))
            trial.set_user_attr(PREDICTED_ATTR, float(acc))
            inner.tell(trial, [float(acc) if o.metric == "accuracy" else m[o.metric] for o in objectives])

    # the feasible front, without Study.best_trials's deep copy of every candidate
    candidates = inner.get_trials(deepcopy=False)
    front = _get_pareto_front_trials_by_trials(candidates, inner.directions, consider_constraint=True)
    chosen = _spread(front, objectives, spec.enqueue, _genomes_in(study, ctx), ctx)
    for trial in chosen:
        study.enqueue_trial(trial.params, user_attrs={PREDICTED_ATTR: trial.user_attrs[PREDICTED_ATTR]},
                            skip_if_exists=True)
    fit = {"records": len(records), "cv_kendall_tau": tau, "candidates": len(candidates), "front": len(front),
           "queued": len(chosen), "seconds": time.perf_counter() - start}
    study.set_user_attr(PREDICTOR_ATTR, [*history, fit])
    reporter.stage(f"accuracy predictor fitted on {len(records)} scored subnets (held-out Kendall tau {tau:.2f}); "
                   f"{fit['candidates']} candidates searched in {fit['seconds']:.1f} s, {len(chosen)} of its "
                   f"{len(front)}-subnet predicted front queued for scoring")
    return fit


def _genome_key(params: dict[str, Any], ctx: Any) -> str:
    from flightco.search import make_genome

    return make_genome(optuna.trial.FixedTrial(params), ctx).to_json()


def _genomes_in(study: optuna.Study, ctx: Any) -> set[str]:
    """Genomes the study has already run or queued (queued ones are rebuilt from their parameters)."""
    out = set()
    for t in study.get_trials(deepcopy=False):
        if "genome" in t.user_attrs:
            out.add(Genome.from_dict(t.user_attrs["genome"]).to_json())
        elif t.state == TrialState.WAITING:
            out.add(_genome_key(queued_params(t), ctx))
    return out


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters, also while it waits in the queue (Optuna keeps them aside until it runs)."""
    return dict(trial.params or trial.system_attrs.get("fixed_params", {}))


def _spread(front: list[Any], objectives: list[Any], k: int, known: set[str], ctx: Any) -> list[Any]:
    """Up to ``k`` front members evenly spaced in rank along the first cost objective (both ends
    kept), skipping subnets the study already has."""
    cost = next((i for i, o in enumerate(objectives) if o.metric != "accuracy"), None)
    members = sorted(front, key=lambda t: t.values[cost] if cost is not None else -t.values[0])
    members = [t for t in members if _genome_key(t.params, ctx) not in known]
    if len(members) <= k:
        return members
    picks = np.unique(np.round(np.linspace(0, len(members) - 1, k)).astype(int))
    return [members[i] for i in picks]
