"""``search.strategy: supernet``: train one weight-sharing supernet, then score candidates with
inherited weights in seconds instead of training each one (Once-for-All / APQ).

The supernet depends on the search space, the data and its own training settings, never on the
hardware: its checkpoint (``<run>/supernet/<key>.pt``) is reused on resume, and a second recipe
with another profile or other constraints finds it in a sibling run folder under the same parent
(``outputs/*/supernet/<key>.pt``) and searches it without training it again.

A candidate's accuracy is *inherited*: its ordinary Brevitas model is extracted from the supernet,
its activation scales and BatchNorm statistics are recalibrated on ``calibration_images`` training
images, and it is scored on the validation split. Trials store that as
``proxy.source = "inherited"``; finalists are then trained stand-alone as in the per-trial
strategy, so final test accuracies are never inherited ones.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flightco.atomic import atomic_path
from flightco.subnet_archive import ArchiveReader, SubnetRecord, append, archive_path, in_sibling_runs, settings_from

SUPERNET_DIR = "supernet"
GATE_IMAGES = 400
"""Validation images that score a subnet's inherited accuracy for the early-stopping gate. The
gate only needs the inherited ranking, which spans 0.14-0.62 on the search benchmark's supernet:
400 seeded images keep Kendall tau 0.95 with the whole 1,200-image split there (mean |difference|
1.2 points) in a third of the time; the search's score after fine-tuning uses the whole split."""


def supernet_config(recipe: Any) -> Any:
    from flightco.nn.supernet import SupernetConfig

    s = recipe.search.supernet
    return SupernetConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, random_subnets=s.random_subnets,
                          children_bits=s.children_bits, children_sizes=s.children_sizes, bit_warmup=s.bit_warmup,
                          seed=recipe.search.seed)


def checkpoint_key(ctx: Any) -> str:
    from flightco.nn.supernet import supernet_key

    ds = ctx.recipe.dataset.model_dump(mode="json")
    return supernet_key(Path(ctx.recipe.search_space_path).read_text(), ds, supernet_config(ctx.recipe))


class SupernetEvaluator:
    """Owns the run's trained supernet and turns Genomes into inherited validation accuracies."""

    def __init__(self, ctx: Any, reporter: Any) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.key = checkpoint_key(ctx)
        self.path = Path(ctx.run_dir) / SUPERNET_DIR / f"{self.key}.pt"
        self.net = self._load_or_train()
        import torch

        g = torch.Generator().manual_seed(ctx.recipe.search.seed)
        n = min(ctx.recipe.search.supernet.calibration_images, len(ctx.dataset.train))
        self.calibration = ctx.dataset.train.x[torch.randperm(len(ctx.dataset.train), generator=g)[:n]]
        self.gate_split = gate_split(ctx.dataset.val, ctx.recipe.search.seed)
        self.settings = settings_from(ctx.recipe.search.supernet, n)
        self.archive = archive_path(self.path)
        self.reader = ArchiveReader()  # this and sibling runs' archives, parsed as they grow

    def record(self, params: dict[str, Any], genome: Any, inherited_accuracy: float | None,
               accuracy: float | None) -> None:
        """Keep a scored subnet in the supernet's archive, for the accuracy predictor of this and
        later searches of the same supernet."""
        append(self.archive, SubnetRecord(params=dict(params), genome=genome.to_dict(), settings=self.settings,
                                          inherited_accuracy=inherited_accuracy, accuracy=accuracy))

    def _sibling_checkpoint(self) -> Path | None:
        return next(iter(in_sibling_runs(self.path)), None)

    def _load_or_train(self) -> Any:
        import torch

        from flightco.nn.supernet import Supernet, train_supernet

        d = self.ctx.dataset
        net = Supernet(self.ctx.space, d.in_channels, d.resolution, d.num_classes)
        if not self.path.is_file():
            sibling = self._sibling_checkpoint()
            if sibling is not None:
                self.reporter.stage(f"reusing the supernet trained for the same space and data in {sibling.parent.parent}")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(self.path) as tmp:
                    shutil.copyfile(sibling, tmp)
        if self.path.is_file():
            blob = torch.load(self.path, map_location="cpu", weights_only=False)
            net.load_state_dict(blob["state_dict"])
            self.info = blob["info"]
            return net
        cfg = supernet_config(self.ctx.recipe)
        self.reporter.stage(f"training the supernet ({cfg.epochs:g} epochs, sandwich rule + in-place distillation)")
        full = d.train
        info = train_supernet(net, full.x, full.y, cfg,
                              progress=lambda s, total, loss: self.reporter.epoch(s, total, None, loss))
        self.info = {**info, "key": self.key, "trained_in": str(Path(self.ctx.run_dir).resolve())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save({"state_dict": net.state_dict(), "info": self.info}, tmp)
        return net

    def evaluate(self, genome: Any, before_finetune: Callable[[float], None] | None = None) -> Evaluation:
        """Extract, recalibrate, fine-tune (``finetune_steps``) and score ``genome`` on validation.

        ``before_finetune``, when given and fine-tuning is on, receives the inherited accuracy
        on ``GATE_IMAGES`` validation images first and may raise (``optuna.TrialPruned``) to skip
        the fine-tuning: the two-fidelity gate of early stopping under this strategy."""
        from flightco.nn.supernet import extract
        from flightco.train import evaluate

        start = time.perf_counter()
        model = extract(self.net, genome, self.calibration)
        spec = self.ctx.recipe.search.supernet
        inherited = None
        if spec.finetune_steps:  # a few QAT steps at the subnet's own bits (see SupernetSpec.finetune_steps)
            from flightco.nn.supernet import train_steps

            if before_finetune is not None:
                inherited = evaluate(model, self.gate_split)
                before_finetune(inherited)
            train_steps(model, self.ctx.dataset.train, spec.finetune_steps, spec.finetune_lr, self.ctx.recipe.search.seed)
        accuracy = evaluate(model, self.ctx.dataset.val)
        return Evaluation(model, accuracy, time.perf_counter() - start, inherited)


def gate_split(val: Any, seed: int) -> Any:
    """A seeded random ``GATE_IMAGES`` of the validation split (all of it when smaller)."""
    import torch

    from flightco.data import Split

    if len(val) <= GATE_IMAGES:
        return val
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))[:GATE_IMAGES]
    return Split(val.x[idx], val.y[idx])


@dataclass(frozen=True)
class Evaluation:
    """One subnet's score: the model it was measured on, its validation accuracy (after any
    fine-tuning), the seconds it took, and the inherited accuracy before fine-tuning when measured."""

    model: Any
    accuracy: float
    seconds: float
    inherited_accuracy: float | None = None
