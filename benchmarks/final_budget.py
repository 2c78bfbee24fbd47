"""A finalist's stand-alone training with the search benchmark's final budget.

Shared by ``search_speed.py``, ``front_cheap_end.py``, ``finalist_rules.py`` and
``finalist_oracle.py`` so that each trains a genome exactly alike (same data subset, same seed,
same schedule) and their test accuracies can be combined: the same genome gives the same figure
in all of them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def load_benchmark_data(dataset: str, limit_train: int, seed: int) -> Any:
    from flightco.data import load_dataset

    return load_dataset(dataset, limit_train=limit_train, seed=seed,
                        val_fraction=0.02 if dataset == "fashion_mnist" else 0.1)


class FinalBudget:
    """Trains a Genome (as a dict) stand-alone and scores it on the test split, once per genome."""

    def __init__(self, data: Any, epochs: float, known: dict[str, float] | None = None, seed: int = 0) -> None:
        self.data = data
        self.epochs = epochs
        self.seed = seed
        self.cache: dict[str, float] = dict(known or {})
        self.seconds = 0.0
        self.trained = 0

    @classmethod
    def from_settings(cls, settings: dict[str, Any], known: dict[str, float] | None = None,
                      seed: int = 0) -> FinalBudget:
        """From the ``settings`` that search_speed.py stores in its JSON; ``seed`` is the training
        seed (0 in search_speed.py; others measure how much a finalist's figure is its seed's)."""
        data = load_benchmark_data(settings["dataset"], settings["limit_train"], settings["seed"])
        return cls(data, settings["final_epochs"], known, seed)

    @staticmethod
    def key(genome: dict[str, Any]) -> str:
        return json.dumps(genome, sort_keys=True)

    def test_accuracy(self, genome: dict[str, Any]) -> float:
        key = self.key(genome)
        if key not in self.cache:
            import torch

            from flightco.nn.mobilenet import build_model
            from flightco.space import Genome
            from flightco.train import TrainConfig, evaluate, train_qat

            start = time.perf_counter()
            torch.manual_seed(self.seed)
            model = build_model(Genome.from_dict(genome))
            train_qat(model, self.data.train, TrainConfig(epochs=self.epochs, batch_size=64, lr=3e-3, seed=self.seed))
            self.cache[key] = evaluate(model, self.data.test)
            self.seconds += time.perf_counter() - start
            self.trained += 1
        return self.cache[key]


def known_accuracies(report: dict) -> dict[str, float]:
    """The test accuracies a search_speed.py JSON already holds (training seed 0), by genome."""
    known = {}
    for target in report["targets"].values():
        for curve in target["curves"].values():
            for _, _, members in curve:
                for m in members:
                    known[FinalBudget.key(m["genome"])] = m["test_accuracy"]
    return known


class Trainers:
    """One :class:`FinalBudget` per training seed over the same data, their accuracies kept in a
    JSON file after every training (seed -> genome -> test accuracy)."""

    def __init__(self, path: Path, settings: dict[str, Any], known: dict[str, float]) -> None:
        self.path = path
        self.stored: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
        self.data = load_benchmark_data(settings["dataset"], settings["limit_train"], settings["seed"])
        self.epochs = settings["final_epochs"]
        self.known = known  # search_speed.py's own figures, all at training seed 0
        self.by_seed: dict[int, Any] = {}

    def test_accuracy(self, genome: dict[str, Any], seed: int = 0) -> float:
        if seed not in self.by_seed:
            known = {**(self.known if seed == 0 else {}), **self.stored.get(str(seed), {})}
            self.by_seed[seed] = FinalBudget(self.data, self.epochs, known, seed)
        trainer = self.by_seed[seed]
        before = trainer.trained
        acc = trainer.test_accuracy(genome)
        if trainer.trained > before:
            self.stored.setdefault(str(seed), {})[FinalBudget.key(genome)] = acc
            self.path.write_text(json.dumps(self.stored))
        return acc

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.by_seed.values())

    @property
    def trained(self) -> int:
        return sum(t.trained for t in self.by_seed.values())


def add_same_front_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the scripts that re-score a search_speed.py run's fronts."""
    ap.add_argument("--json", type=Path, required=True, help="search_speed.json of a search_speed.py run")
    ap.add_argument("--runs", type=Path, default=None,
                    help="the run folder search_speed.py printed (default: the one its JSON names)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="JSON of trained accuracies (default: finalist_oracle_cache.json beside --json)")
    ap.add_argument("--threads", type=int, default=2)


def open_same_fronts(args: argparse.Namespace) -> tuple[dict, Path, Trainers]:
    """The run's JSON report, its run folder and the cached final-budget trainers."""
    import torch

    report = json.loads(args.json.read_text())
    folder = args.runs or (Path(report["run_folder"]) if "run_folder" in report else None)
    if folder is None or not (folder / "runs").is_dir():
        raise SystemExit(f"--runs: give the run folder search_speed.py printed (one holding runs/); got {folder}")
    torch.set_num_threads(args.threads)
    trainers = Trainers(args.cache or args.json.with_name("finalist_oracle_cache.json"), report["settings"],
                        known_accuracies(report))
    return report, folder, trainers
