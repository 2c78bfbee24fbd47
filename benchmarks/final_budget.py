"""A finalist's stand-alone training with the search benchmark's final budget.

Shared by ``search_speed.py``, ``front_cheap_end.py``, ``finalist_rules.py`` and
``finalist_oracle.py`` so that each trains a genome exactly alike (same data subset, same seed,
same schedule) and their test accuracies can be combined: the same genome gives the same figure
in all of them.
"""

from __future__ import annotations

import json
import time
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
