"""The search: an Optuna multi-objective study over Genomes, then the finalists' training.

Two stages, as is standard when full training of every candidate does not fit the budget:

1. **Proxy search.** Each trial samples a Genome, prices it on every hardware profile
   (torch-free, microseconds), and, if it meets the recipe's constraints, trains it briefly
   (``training.proxy``) and scores it on the *validation* split. Trials that break a
   constraint are recorded with their costs but never trained.
2. **Finalists.** The most promising members of the proxy Pareto front are retrained with
   ``training.final`` on train+validation and scored on the held-out *test* split, together
   with a uniform-precision twin of each (``training.reference_bits``), so reports can say
   what mixed precision bought. Final figures are stored as study user attributes
   ``final:<trial>``; proxy figures stay the trials' objective values. Both are labelled.

Everything is stored in the Optuna storage, so a re-run of the same command resumes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from flightco.data import Dataset, Split, load_dataset
from flightco.errors import RunError
from flightco.finalists import choose_finalists, pick_finalists  # noqa: F401  (re-exported)
from flightco.front import final_key, finals_of, mean_terms, proxy_front  # noqa: F401  (re-exported)
from flightco.hw.profile import HardwareProfile, load_profile
from flightco.metrics import genome_metrics
from flightco.recipe import Recipe, TrainSpec
from flightco.runs import trial_dir
from flightco.space import Genome, SearchSpace, sample_genome



class TrialFailed(Exception):
    """A candidate could not be evaluated (e.g. its training diverged): the trial is recorded as
    failed with the reason, and the search goes on."""


class Reporter(Protocol):
    """What the search tells its user; the CLI implements it with rich."""

    def trial_started(self, number: int, genome: Genome, metrics: dict[str, float]) -> None: ...

    def epoch(self, epoch: int, total: int, accuracy: float | None, loss: float) -> None: ...

    def trial_finished(self, row: dict[str, Any]) -> None: ...

    def stage(self, text: str) -> None: ...


class QuietReporter:
    """A reporter that says nothing (tests, library use)."""

    def trial_started(self, number: int, genome: Genome, metrics: dict[str, float]) -> None:
        pass

    def epoch(self, epoch: int, total: int, accuracy: float | None, loss: float) -> None:
        pass

    def trial_finished(self, row: dict[str, Any]) -> None:
        pass

    def stage(self, text: str) -> None:
        pass


@dataclass
class SearchContext:
    """Everything a trial needs, loaded once per process."""

    recipe: Recipe
    space: SearchSpace
    profiles: list[HardwareProfile]
    dataset: Dataset
    run_dir: Path


def load_context(recipe: Recipe, run_dir: Path) -> SearchContext:
    space = SearchSpace.load(recipe.search_space_path)
    if recipe.space_hints_path is not None:
        from flightco.space_hints import SpaceHints, apply_hints

        space = apply_hints(space, SpaceHints.load(recipe.space_hints_path), str(recipe.space_hints_path))
    profiles = [load_profile(p) for p in recipe.hardware_paths]
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise RunError(f"hardware: two profiles share the name {names!r}; names prefix metrics and must differ")
    ds = recipe.dataset
    dataset = load_dataset(
        ds.name, root=recipe.dataset_root, test_fraction=ds.test_fraction, val_fraction=ds.val_fraction,
        seed=recipe.search.seed, limit_train=ds.limit_train, options=ds.options,
    )
    ctx = SearchContext(recipe, space, profiles, dataset, run_dir)
    _check_metric_names(ctx)
    return ctx


def _check_metric_names(ctx: SearchContext) -> None:
    """Fail before the first trial when an objective or constraint names no known metric."""
    known = set(genome_metrics(sample_any_genome(ctx), ctx.profiles)) | {"accuracy"}
    for m in [o.metric for o in ctx.recipe.objectives] + [c.metric for c in ctx.recipe.constraints]:
        if m not in known:
            profiles = ", ".join(p.name for p in ctx.profiles)
            raise RunError(f"recipe: metric {m!r} is unknown; profile-prefixed metrics use the profile names ({profiles})")


REACHABILITY_SAMPLES = 500


def check_constraints_reachable(ctx: SearchContext, samples: int = REACHABILITY_SAMPLES) -> None:
    """Refuse, before any trial, constraints that no network of the space can meet.

    Costs are torch-free and take microseconds, so the smallest network of the space (the
    smallest of every numeric choice: the cheapest in practice) and ``samples`` random ones are
    priced; if none is feasible, the search would only burn its budget on untrained trials.
    """
    import random

    constraints = ctx.recipe.constraints
    if not constraints:
        return
    rng = random.Random(ctx.recipe.search.seed)

    class Smallest:
        def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
            ints = [c for c in choices if isinstance(c, int)]
            return min(ints) if ints else choices[0]

    class Random:
        def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
            return rng.choice(list(choices))

    best: dict[str, float] = {}
    for trial in [Smallest()] + [Random() for _ in range(samples)]:
        metrics = genome_metrics(make_genome(trial, ctx), ctx.profiles)
        violations = {str(c): c.violation(metrics[c.metric]) for c in constraints}
        if all(v <= 0 for v in violations.values()):
            return
        for c in constraints:
            v = metrics[c.metric]
            if str(c) not in best or c.violation(v) < c.violation(best[str(c)]):
                best[str(c)] = v
    closest = ", ".join(f"{name} (closest: {v:.4g})" for name, v in best.items())
    raise RunError(f"constraints: no network of the search space meets {closest} among the smallest and "
                   f"{samples} random ones; relax the constraint(s) or widen the space")


def sample_any_genome(ctx: SearchContext) -> Genome:
    """The first choice of every option: a valid Genome for checks."""

    class First:
        def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
            return choices[0]

    return make_genome(First(), ctx)


def make_genome(trial: Any, ctx: SearchContext) -> Genome:
    d = ctx.dataset
    return sample_genome(trial, ctx.space, in_channels=d.in_channels, resolution=d.resolution, num_classes=d.num_classes)


def train_config(spec: TrainSpec, seed: int) -> Any:
    from flightco.train import TrainConfig

    return TrainConfig(
        epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, weight_decay=spec.weight_decay,
        label_smoothing=spec.label_smoothing, seed=seed,
    )


def train_genome(
    genome: Genome, train: Split, val: Split | None, spec: TrainSpec, seed: int, reporter: Reporter,
    rungs: Sequence[float] = (), on_rung: Any = None, rung_bn_batches: int = 5,
) -> tuple[Any, Any]:
    """Build and QAT-train a model; returns (model, TrainResult). ``on_rung(fraction, accuracy)``
    is called at each rung (early stopping may raise there)."""
    import torch

    from flightco.nn.mobilenet import build_model
    from flightco.train import train_qat

    torch.manual_seed(seed)
    model = build_model(genome)
    total = math.ceil(spec.epochs)
    result = train_qat(
        model, train, train_config(spec, seed), val=val,
        on_epoch=lambda e, acc, loss: reporter.epoch(e, total, acc, loss),
        rungs=rungs, on_rung=on_rung, rung_bn_batches=rung_bn_batches,
    )
    return model, result


def realised_terms(model: Any) -> dict[str, list[int]]:
    """FLightNN layers of a trained model: kernel name -> filters using 1, 2, ... terms."""
    from flightco.nn.flight import term_histograms
    from flightco.nn.mobilenet import kernel_name

    return {kernel_name(name): counts for name, counts in term_histograms(model).items()}


def save_weights(model: Any, genome: Genome, path: Path) -> None:
    """Save state dict + genome atomically (a crash never leaves a half-written file)."""
    import torch

    from flightco.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"genome": genome.to_dict(), "state_dict": model.state_dict()}, tmp)


class Objective:
    """The Optuna objective: Genome -> costs -> (constraints) -> proxy training -> values."""

    def __init__(self, ctx: SearchContext, reporter: Reporter) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self._supernet: Any = None
        self._scale_known = False

    def supernet(self) -> Any:
        """The run's trained supernet evaluator (trained or loaded on first use)."""
        if self._supernet is None:
            from flightco.supernet_search import SupernetEvaluator

            self._supernet = SupernetEvaluator(self.ctx, self.reporter)
        return self._supernet

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        ctx = self.ctx
        recipe = ctx.recipe
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        genome = make_genome(trial, ctx)
        metrics = genome_metrics(genome, ctx.profiles)
        trial.set_user_attr("genome", genome.to_dict())
        trial.set_user_attr("bits", genome.bits_summary())
        trial.set_user_attr("metrics", metrics)
        violations = {str(c): c.violation(metrics[c.metric]) for c in recipe.constraints}
        for name, v in violations.items():
            trial.set_constraint(name, v)
        self.reporter.trial_started(trial.number, genome, metrics)
        feasible = all(v <= 0 for v in violations.values())
        if not feasible:
            broken = ", ".join(n for n, v in violations.items() if v > 0)
            trial.set_user_attr("status", f"infeasible: {broken} (not trained)")
            accuracy = 0.0
        else:
            try:
                accuracy = self._proxy_accuracy(trial, genome, metrics)
            except optuna.TrialPruned:
                row = {"trial": trial.number, "accuracy": None, **metrics, "bits": genome.bits_summary(),
                       "feasible": True, "pruned": trial.user_attrs.get("status", "")}
                self.reporter.trial_finished(row)
                raise
            realised = trial.user_attrs.get("flight_terms")
            if realised:
                # FLightNN layers were priced at k_max terms; price the terms training kept
                metrics = genome_metrics(genome, ctx.profiles, mean_terms(realised))
                trial.set_user_attr("metrics", metrics)
        values = tuple(accuracy if o.metric == "accuracy" else metrics[o.metric] for o in recipe.objectives)
        row = {"trial": trial.number, "accuracy": accuracy, **metrics, "bits": genome.bits_summary(), "feasible": feasible}
        self.reporter.trial_finished(row)
        return values

    def _inherited_accuracy(self, trial: optuna.Trial, genome: Genome, metrics: dict[str, float]) -> float:
        """Supernet strategy: extract the subnet, recalibrate it, fine-tune it, score it on
        validation. With early stopping, its inherited accuracy first decides (MO-ASHA against the
        earlier subnets' inherited accuracies) whether it is worth its fine-tuning steps."""
        from flightco.early_stop import INHERITED_RUNG
        from flightco.predictor_search import queue_predicted_front, scored_records

        evaluator = self.supernet()
        self._ensure_score_scale(trial.study, evaluator)
        if self.ctx.recipe.search.supernet.predictor is not None:
            records = scored_records(evaluator.path, evaluator.settings, evaluator.reader)
            queue_predicted_front(trial.study, self.ctx, records, self.reporter)
        stopping = self.ctx.recipe.search.early_stopping
        on_rung = self._early_stopping(trial, metrics) if stopping else None

        def gate(accuracy: float) -> None:
            try:
                on_rung(INHERITED_RUNG, accuracy)
            except optuna.TrialPruned:
                evaluator.record(trial.params, genome, inherited_accuracy=accuracy, accuracy=None)
                raise

        result = evaluator.evaluate(genome, before_finetune=gate if on_rung else None)
        evaluator.record(trial.params, genome, inherited_accuracy=result.inherited_accuracy, accuracy=result.accuracy)
        save_weights(result.model, genome, trial_dir(self.ctx.run_dir, trial.number) / "proxy.pt")
        trial.set_user_attr("status", "inherited from the supernet")
        trial.set_user_attr("weights_trial", trial.number)
        trial.set_user_attr("proxy", {
            "val_accuracy": result.accuracy, "source": "inherited", "supernet": evaluator.key, "seconds": result.seconds,
            "calibration_images": len(evaluator.calibration), "val_images": len(self.ctx.dataset.val),
            "finetune_steps": self.ctx.recipe.search.supernet.finetune_steps,
            **({"inherited_accuracy": result.inherited_accuracy, "inherited_val_images": len(evaluator.gate_split)}
               if result.inherited_accuracy is not None else {})})
        return result.accuracy

    def _ensure_score_scale(self, study: optuna.Study, evaluator: Any) -> None:
        """Supernet strategy with ``score_scale`` on: make the score's mapping onto the proxy scale
        known to the finalist rule (study attribute ``score_scale``), from a stored calibration of
        this supernet (this run's or a sibling's) or, once the search has scored enough subnets, by
        training a few front members from scratch."""
        from flightco import score_scale as ss

        spec = self.ctx.recipe.search.supernet.score_scale
        if self._scale_known or spec is None:
            return
        if ss.SCALE_ATTR in study.user_attrs:  # a resumed run, or another worker of this one
            self._scale_known = True
            return
        settings = ss.scale_settings(self.ctx, evaluator.settings)
        own = ss.scale_path(evaluator.path)
        found = ss.stored(evaluator.path, settings)
        if found is not None:
            scale, where = found
            if where != own:
                ss.write(own, scale)
            source = "measured in this run" if where == own else f"reused from {where.parent.parent}"
        else:
            ready = _calibration_front(study, spec.after_scored, settings["count"])
            if ready is None:
                return
            scale = ss.measure(*ready, self.ctx, settings, self.reporter)
            ss.write(own, scale)
            source = "measured in this run"
        info = ss.summary(scale, source)
        study.set_user_attr(ss.SCALE_ATTR, info)
        self._scale_known = True
        nan = float("nan")
        detail = (f"finalists are chosen on {info['offset']:+.3f} + score / {info['scale']:.2f}"
                  if "unused_because" not in info else
                  f"finalists are chosen on the score {info['offset']:+.3f} ({info['unused_because']})")
        self.reporter.stage(f"score scale {source}: {info['points']} front members trained from scratch "
                            f"(score vs proxy slope {nan if info['raw'] is None else info['raw']:.2f}, "
                            f"r {nan if info['r'] is None else info['r']:.2f}); {detail}")

    def _early_stopping(self, trial: optuna.Trial, metrics: dict[str, float]) -> Any:
        """The ``on_rung`` callback of this trial's proxy training: record the rung's accuracy and,
        when early stopping is on, stop the trial if the MO-ASHA rule says so."""
        from flightco.early_stop import RUNG_ATTR, cost_vector, decide, peers_at, rung_key

        spec = self.ctx.recipe.search.early_stopping
        objectives = [(o.metric, o.direction) for o in self.ctx.recipe.objectives]
        record: dict[str, float] = {}

        def on_rung(fraction: float, accuracy: float) -> None:
            record[rung_key(fraction)] = accuracy
            trial.set_user_attr(RUNG_ATTR, dict(record))
            if not spec.enabled:
                return
            trials = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                    TrialState.RUNNING))
            peers = peers_at(trials, fraction, objectives, exclude=trial.number)
            decision = decide(accuracy, cost_vector(metrics, objectives), peers, fraction, spec.eta, spec.min_peers)
            if decision.stop:
                trial.set_user_attr("status", f"pruned: {decision.reason()}")
                raise optuna.TrialPruned(decision.reason())

        return on_rung

    def _proxy_accuracy(self, trial: optuna.Trial, genome: Genome, metrics: dict[str, float]) -> float:
        ctx = self.ctx
        pruned = _find_pruned_twin(trial.study, genome)
        if pruned is not None:
            trial.set_user_attr("status", f"pruned: duplicate of trial {pruned.number}, which was stopped early")
            for key in ("rungs",):
                if key in pruned.user_attrs:
                    trial.set_user_attr(key, pruned.user_attrs[key])
            raise optuna.TrialPruned(f"duplicate of pruned trial {pruned.number}")
        same = _find_trained_twin(trial.study, genome)
        if same is None and ctx.recipe.search.strategy == "supernet":
            return self._inherited_accuracy(trial, genome, metrics)
        if same is not None:
            trial.set_user_attr("status", f"duplicate of trial {same.number} (not retrained)")
            trial.set_user_attr("weights_trial", same.user_attrs.get("weights_trial", same.number))
            trial.set_user_attr("proxy", same.user_attrs.get("proxy", {}))
            if "flight_terms" in same.user_attrs:
                trial.set_user_attr("flight_terms", same.user_attrs["flight_terms"])
            return float(same.user_attrs["proxy"]["val_accuracy"])
        seed = ctx.recipe.search.seed * 100_003 + trial.number
        from flightco.train import DivergedError

        try:
            stopping = ctx.recipe.search.early_stopping
            model, result = train_genome(
                genome, ctx.dataset.train, ctx.dataset.val, ctx.recipe.training.proxy, seed, self.reporter,
                rungs=stopping.rungs if stopping else (),
                on_rung=self._early_stopping(trial, metrics) if stopping else None,
                rung_bn_batches=stopping.bn_batches if stopping else 5,
            )
        except DivergedError as exc:
            trial.set_user_attr("status", f"failed: {exc}")
            raise TrialFailed(str(exc)) from None
        accuracy = result.epoch_accuracies[-1]
        terms = realised_terms(model)
        if terms:
            trial.set_user_attr("flight_terms", terms)
        save_weights(model, genome, trial_dir(ctx.run_dir, trial.number) / "proxy.pt")
        trial.set_user_attr("status", "trained")
        trial.set_user_attr("weights_trial", trial.number)
        trial.set_user_attr(
            "proxy",
            {"val_accuracy": accuracy, "seconds": result.seconds, "steps": result.steps,
             "epochs": ctx.recipe.training.proxy.epochs, "val_images": len(ctx.dataset.val)},
        )
        return accuracy


def _calibration_front(study: optuna.Study, after_scored: int, count: int) -> tuple[list[FrozenTrial], int, int] | None:
    """(best-ranked scored trials, accuracy index, primary cost index) once the study has scored
    ``after_scored`` subnets and at least 3 of them can be calibration members; None until then."""
    from flightco.score_scale import calibration_members, ranked_candidates

    objectives = study.user_attrs.get("objectives", [])
    if "accuracy" not in objectives or len(objectives) < 2:
        return None
    scored = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "proxy" in t.user_attrs]
    if len(scored) < after_scored:
        return None
    acc_i = objectives.index("accuracy")
    cost_i = next(i for i in range(len(objectives)) if i != acc_i)
    candidates = ranked_candidates(scored, study.directions, acc_i, count)
    if len(calibration_members(candidates, acc_i, cost_i, count)) < 3:
        return None
    return candidates, acc_i, cost_i


def _find_pruned_twin(study: optuna.Study, genome: Genome) -> FrozenTrial | None:
    """A trial with the same Genome that early stopping stopped (its verdict is reused)."""
    from flightco.early_stop import stopped_trials

    key = genome.to_dict()
    return next((t for t in stopped_trials(study) if t.user_attrs.get("genome") == key), None)


def _find_trained_twin(study: optuna.Study, genome: Genome) -> FrozenTrial | None:
    key = genome.to_dict()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("genome") == key and "proxy" in t.user_attrs:
            return t
    return None


# ---- finalists ----------------------------------------------------------------------------------


def run_finalists(study: optuna.Study, ctx: SearchContext, reporter: Reporter, k: int) -> list[dict[str, Any]]:
    """Retrain finalists (and their uniform-precision twins) with the final budget; resumable."""
    from flightco.data import Split
    from flightco.train import evaluate

    import torch

    recipe = ctx.recipe
    ds = ctx.dataset
    full_train = Split(torch.cat([ds.train.x, ds.val.x]), torch.cat([ds.train.y, ds.val.y]))
    results = []
    for trial in choose_finalists(study, k):
        key = final_key(trial.number)
        if key in study.user_attrs:
            results.append(study.user_attrs[key])
            continue
        genome = Genome.from_dict(trial.user_attrs["genome"])
        entry: dict[str, Any] = {"trial": trial.number, "train_images": len(full_train), "test_images": len(ds.test)}
        twins = [("final", genome)]
        if recipe.training.reference_bits is not None:
            twins.append(("reference", genome.with_uniform_bits(recipe.training.reference_bits)))
        for label, g in twins:
            reporter.stage(f"{label} training of trial {trial.number} ({g.bits_summary()}), {recipe.training.final.epochs:g} epochs")
            seed = recipe.search.seed * 100_003 + trial.number
            start = time.perf_counter()
            model, _ = train_genome(g, full_train, None, recipe.training.final, seed, reporter)
            acc = evaluate(model, ds.test)
            save_weights(model, g, trial_dir(ctx.run_dir, trial.number) / f"{label}.pt")
            terms = realised_terms(model)
            entry[label] = {
                "test_accuracy": acc,
                "seconds": time.perf_counter() - start,
                "bits": g.bits_summary(),
                "genome": g.to_dict(),
                "metrics": genome_metrics(g, ctx.profiles, mean_terms(terms)),
                "epochs": recipe.training.final.epochs,
            }
            if terms:
                entry[label]["flight_terms"] = terms
        study.set_user_attr(key, entry)
        results.append(entry)
    write_finals_file(study, Path(ctx.run_dir))
    return results


def write_finals_file(study: optuna.Study, run_dir: Path) -> None:
    """``finals.json``: every finalist the study holds, from all sessions (rebuilt from the study's
    ``final:<trial>`` attributes, which are the record), written atomically."""
    from flightco.atomic import write_text

    finals = [v for _, v in sorted(finals_of(study).items())]
    write_text(Path(run_dir) / "finals.json", json.dumps(finals, indent=2) + "\n")


