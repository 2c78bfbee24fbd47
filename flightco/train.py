"""Quantization-aware training and a correct evaluation.

Two things make short QAT runs look broken in eval mode, and both are handled here rather
than hidden:

1. Brevitas activation quantizers collect scale statistics for their first
   ``collect_stats_steps`` training steps and only then turn them into learned parameters.
   ``train_qat`` sizes that phase to a fraction of the run (``stats_fraction``), so the
   scales are learned for most of the run and eval mode uses those learned scales.
2. BatchNorm running statistics are an exponential average that lags weights that are still
   moving. After training, ``recalibrate_batchnorm`` recomputes them exactly (cumulative
   average over a pass of training batches with the weights frozen): "precise BN".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from flightco.data import Split
from flightco.nn.flight import flight_quantizers, flight_regularization
from flightco.nn.quant import set_collect_stats_steps


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 3.0
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    stats_fraction: float = 0.1  # share of steps used to collect activation statistics
    max_stats_steps: int = 300
    bn_calibration_batches: int = 20
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    epoch_accuracies: tuple[float, ...]


THRESHOLD_LR_FACTOR = 10.0


def one_cycle(total_steps: int, warmup: float = 0.25) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up from 4% over ``warmup`` of the steps, then cosine to 0.

    Written out (rather than ``OneCycleLR``) because it must also work for runs of a few steps.
    """
    warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return 0.04 + 0.96 * step / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


EVAL_BATCH = 128
"""Batch of evaluation passes. Smaller batches keep these small networks' activations in cache:
on the 2-vCPU EPYC, scoring 1,200 validation images took 30 % less time at 128 than at 500
(12 extracted subnets, 8.4 s against 12.1 s) and 13 % less than at 256."""


def evaluate(model: nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split), batch_size):
            logits = model(split.x[i : i + batch_size])
            correct += int((logits.argmax(1) == split.y[i : i + batch_size]).sum())
    return correct / max(1, len(split))


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits in eval mode, batched."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def recalibrate_batchnorm(model: nn.Module, split: Split, batches: int, batch_size: int, seed: int = 0) -> None:
    """Recompute BN running statistics as an exact average over ``batches`` training batches."""
    if batches <= 0 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=g)
    with exact_batchnorm_average(model):
        model.train()
        with torch.no_grad():
            for b in range(batches):
                idx = order[(b * batch_size) % len(split) :][:batch_size]
                if len(idx) < 2:
                    break
                model(split.x[idx])
    model.eval()


@contextmanager
def exact_batchnorm_average(model: nn.Module) -> Iterator[None]:
    """Inside, training-mode passes make every BN's running statistics the exact average over
    those passes (reset, cumulative), not a momentum blend with what came before; so passes made
    for another purpose (collecting activation scales) can recalibrate BN at the same time."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


def train_qat(
    model: nn.Module,
    train: Split,
    cfg: TrainConfig,
    *,
    val: Split | None = None,
    on_epoch: Callable[[int, float | None, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    rungs: Sequence[float] = (),
    on_rung: Callable[[float, float], None] | None = None,
    rung_bn_batches: int = 5,
) -> TrainResult:
    """Train with AdamW and a one-cycle schedule for ``cfg.epochs`` (fractional epochs allowed).

    ``on_epoch(epoch, val_accuracy_or_None, loss)`` is called after each full epoch (and at the
    end) so callers can show progress or stop early. Raises :class:`DivergedError` on a
    non-finite loss.

    ``on_rung(fraction, val_accuracy)`` is called when training reaches each fraction in ``rungs``
    (multi-objective early stopping judges the trial there and may raise to stop it). The rung's
    accuracy is measured in eval mode after recomputing BatchNorm statistics on
    ``rung_bn_batches`` batches, which leaves the training itself unchanged: train mode never
    reads those statistics and the final precise-BN pass recomputes them. Rungs that fall inside
    the activation-statistics phase are skipped (eval mode would use unfinished scales).
    """
    torch.manual_seed(cfg.seed)
    n = len(train)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
    stats_steps = max(5, min(cfg.max_stats_steps, int(total_steps * cfg.stats_fraction)))
    set_collect_stats_steps(model, stats_steps)
    rung_at = {max(1, int(round(r * total_steps))): r for r in rungs} if (val is not None and on_rung) else {}
    rung_at = {s: r for s, r in rung_at.items() if stats_steps < s < total_steps}
    # FLightNN thresholds are not weights: decaying them toward 0 would switch every term back on,
    # and they live on a relative-residual scale (0..1) where a proxy run of a few dozen Adam
    # steps at the weights' learning rate could not move them across the filters' residuals
    thresholds = [q.thresholds for _, q in flight_quantizers(model)]
    flight = bool(thresholds)
    others = [p for p in model.parameters() if all(p is not t for t in thresholds)]
    groups = [{"params": others}] + ([{"params": thresholds, "weight_decay": 0.0, "lr": cfg.lr * THRESHOLD_LR_FACTOR}] if flight else [])
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(total_steps))
    g = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    accs: list[float] = []
    step = 0
    loss_value = float("nan")
    epoch = 0
    while step < total_steps:
        model.train()
        order = torch.randperm(n, generator=g)
        for i in range(0, n, cfg.batch_size):
            if step >= total_steps:
                break
            idx = order[i : i + cfg.batch_size]
            if len(idx) < 2:
                continue
            logits = model(train.x[idx])
            loss = F.cross_entropy(logits, train.y[idx], label_smoothing=cfg.label_smoothing)
            loss_value = float(loss.detach())
            if flight:
                loss = loss + flight_regularization(model)  # FLightNN: fewer terms where lambda says
            if not math.isfinite(loss_value):
                raise DivergedError(f"training diverged at step {step}: loss is {loss_value}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step in rung_at:
                recalibrate_batchnorm(model, train, rung_bn_batches, cfg.batch_size, cfg.seed + step)
                rung_accuracy = evaluate(model, val)
                model.train()
                on_rung(rung_at[step], rung_accuracy)
            if should_stop is not None and should_stop():
                break
        epoch += 1
        done = step >= total_steps or (should_stop is not None and should_stop())
        if done:
            recalibrate_batchnorm(model, train, cfg.bn_calibration_batches, cfg.batch_size, cfg.seed)
        acc = evaluate(model, val) if val is not None and (done or on_epoch is not None) else None
        if acc is not None:
            accs.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, acc, loss_value)
        if done:
            break
    return TrainResult(step, time.perf_counter() - start, loss_value, tuple(accs))
