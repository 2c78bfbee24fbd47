"""A quantization-aware weight-sharing supernet over a search space (Single-Path NAS / OFA / APQ).

One set of float weights serves every Genome of a space:

* **kernels**: each depthwise layer holds the largest kernel; a ``k x k`` choice is its centre
  (Single-Path NAS's "superkernel");
* **widths and expansion**: each layer holds the most channels any choice needs; a choice uses the
  first ones (Once-for-All). Hidden (expanded) channels are kept sorted by importance (L1 norm of
  the depthwise and projection filters they feed), so the first ones are the ones worth keeping;
* **depth**: each stage holds its deepest choice; a depth ``d`` runs the first ``d`` blocks;
* **bits**: weights are fake-quantized per output channel at the layer's bits (as Brevitas's
  ``Int8WeightPerChannelFloat`` does: symmetric, narrow range, max-abs scale) from the same float
  weights; activations with a per-batch max observer (BatchQuant's finding: one learned clip
  threshold shared by every subnet and bit-width goes unstable, so nothing here is learned per
  bit-width). BatchNorm always normalises with the batch's own statistics while training.

Training follows the sandwich rule with in-place distillation (slimmable networks, BigNAS): each
step trains the largest subnet on the labels and the smallest plus ``random_subnets`` random ones
(random architecture *and* bit assignment) on the largest's soft predictions.

:func:`extract` returns the same ordinary Brevitas model :func:`flightco.nn.mobilenet.build_model`
builds, with the supernet's weights copied in, its activation scales and BatchNorm statistics
recalibrated on a few hundred training images: export, pricing and fine-tuning never see the
supernet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from flightco.errors import SpaceError
from flightco.space import FLOAT_BITS, BlockGene, Genome, Precision, SearchSpace, sample_genome


# ---- fake quantization (straight-through) ----------------------------------------------------


def quantize_weight(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """Symmetric narrow-range fake quantization with a max-abs scale (per output channel)."""
    if bits >= FLOAT_BITS:
        return w
    qmax = 2 ** (bits - 1) - 1
    dims = tuple(range(1, w.dim())) if per_channel else tuple(range(w.dim()))
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-8) / qmax
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return w + (q - w).detach()


def quantize_activation(x: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """Fake quantization with the batch's own max as the clip (BatchQuant-style observer)."""
    if bits >= FLOAT_BITS:
        return x
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    qmin = -(2 ** (bits - 1)) if signed else 0
    scale = x.detach().abs().amax().clamp_min(1e-8) / qmax
    q = torch.clamp(torch.round(x / scale), qmin, qmax) * scale
    return x + (q - x).detach()


# ---- elastic layers ---------------------------------------------------------------------------


class ElasticConvBN(nn.Module):
    """The largest conv (+ BN) of a position; forward uses a slice: ``cin``/``cout`` first channels
    and the centre ``k x k`` of the kernel, weights fake-quantized at ``w_bits``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, depthwise: bool = False) -> None:
        super().__init__()
        self.depthwise, self.stride, self.k_max = depthwise, stride, k
        self.weight = nn.Parameter(torch.empty(cout, 1 if depthwise else cin, k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn_weight = nn.Parameter(torch.ones(cout))
        self.bn_bias = nn.Parameter(torch.zeros(cout))

    def active_weight(self, cin: int, cout: int, k: int) -> torch.Tensor:
        lo = (self.k_max - k) // 2
        w = self.weight[:cout, : (1 if self.depthwise else cin), lo : lo + k, lo : lo + k]
        return w

    def forward(self, x: torch.Tensor, cout: int, k: int, w_bits: int) -> torch.Tensor:
        cin = x.shape[1]
        w = quantize_weight(self.active_weight(cin, cout, k), w_bits)
        y = F.conv2d(x, w, None, self.stride, k // 2, groups=cin if self.depthwise else 1)
        return F.batch_norm(y, None, None, self.bn_weight[:cout], self.bn_bias[:cout], training=True)


class ElasticBlock(nn.Module):
    """The largest inverted-residual block of a position in a stage."""

    def __init__(self, cin_max: int, cout_max: int, expansion_max: int, k_max: int, stride: int) -> None:
        super().__init__()
        hidden = cin_max * expansion_max
        self.stride = stride
        self.expand = ElasticConvBN(cin_max, hidden, 1, 1)
        self.dw = ElasticConvBN(hidden, hidden, k_max, stride, depthwise=True)
        self.project = ElasticConvBN(hidden, cout_max, 1, 1)

    def forward(self, x: torch.Tensor, gene: BlockGene, quantize_input: bool) -> torch.Tensor:
        cin = x.shape[1]
        first = gene.expand if gene.expand is not None else gene.dw
        if quantize_input:
            x = quantize_activation(x, first.a_bits, signed=True)
        h = x
        hidden = cin * gene.expansion
        if gene.expand is not None:
            h = quantize_activation(F.relu(self.expand(h, hidden, 1, gene.expand.w_bits)), gene.dw.a_bits, signed=False)
        h = quantize_activation(F.relu(self.dw(h, hidden, gene.kernel, gene.dw.w_bits)), gene.project.a_bits, signed=False)
        y = self.project(h, gene.out_channels, 1, gene.project.w_bits)
        return x + y if gene.stride == 1 and cin == gene.out_channels else y

    @torch.no_grad()
    def sort_hidden_channels(self) -> None:
        """Reorder hidden channels by importance (L1 norm of the filters they feed), largest first,
        permuting the expand outputs, the depthwise filters and the projection inputs together."""
        importance = self.dw.weight.abs().sum(dim=(1, 2, 3)) + self.project.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        for p in (self.expand.weight, self.expand.bn_weight, self.expand.bn_bias,
                  self.dw.weight, self.dw.bn_weight, self.dw.bn_bias):
            p.copy_(p[order])
        self.project.weight.copy_(self.project.weight[:, order])


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet training budget and the sandwich rule's shape."""

    epochs: float = 4.0
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    random_subnets: int = 2
    distill_temperature: float = 1.0
    sort_every_steps: int = 200
    children_bits: str = "top"
    """Bit-widths of the sandwich rule's children: ``top`` trains every child architecture at the
    space's highest bit-widths and leaves the lower ones to the per-subnet recalibration of
    :func:`extract`; ``random`` gives each child a random bit assignment per step. Measured on
    Fashion-MNIST over three seeds each (benchmarks/supernet_ranking.py, README): Kendall tau of
    inherited vs stand-alone accuracy 0.54-0.71 with ``top``, 0.44-0.50 with ``random`` — random
    low-bit children pull the shared weights apart before the architectures agree."""
    bit_warmup: float = 0.0
    """``random`` only: share of the steps over which the children's lowest bit-width descends
    from the space's top choice to its bottom one (0: every bit-width from the first step; 0.5
    ranked no better than 0 over three seeds)."""
    children_sizes: str = "choices"
    """How the sandwich rule's random children are drawn: ``choices`` draws every architectural
    choice uniformly, so most children are mid-sized (a network's MACs are a product of many
    choices: in the default space 10 % of them lie in the smallest 37 % of the log-MACs range) and
    the cheap end is rarely trained; ``spread`` first draws a size level uniformly and then each
    choice near that level (:meth:`Supernet.random_genome`), so the children cover the log-MACs
    range about evenly, the cheap end included (AttentiveNAS samples uniformly in FLOPs for the
    same reason)."""
    seed: int = 0


class Supernet(nn.Module):
    """Every network of ``space`` for inputs of ``in_channels`` x ``resolution``², ``num_classes``."""

    def __init__(self, space: SearchSpace, in_channels: int, resolution: int, num_classes: int) -> None:
        super().__init__()
        if any(isinstance(b, str) for b in space.precision.w_bits):
            raise SpaceError("search.strategy supernet: FLightNN choices (flight(...)) are not supported by the supernet yet")
        self.space, self.in_channels, self.resolution, self.num_classes = space, in_channels, resolution, num_classes
        stem_max = max(space.stem.channels)
        self.stem = ElasticConvBN(in_channels, stem_max, space.stem.kernel, space.stem.stride)
        self.stages = nn.ModuleList()
        cin = stem_max
        for stage in space.stages:
            blocks = nn.ModuleList()
            for bi in range(max(stage.depth)):
                blocks.append(ElasticBlock(cin, max(stage.channels), max(stage.expansion), max(stage.kernel),
                                           stage.stride if bi == 0 else 1))
                cin = max(stage.channels)
            self.stages.append(blocks)
        self.classifier_weight = nn.Parameter(torch.empty(num_classes, cin))
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.kaiming_uniform_(self.classifier_weight, a=math.sqrt(5))

    def _stage_blocks(self, genome: Genome) -> Iterator[tuple[ElasticBlock, BlockGene]]:
        """Pair each gene with its supernet block: stage by stage, the first ``depth`` blocks."""
        genes = genome.blocks
        i = 0
        for depth, blocks in zip(stage_depths(genome, self.space), self.stages):
            for j in range(depth):
                yield blocks[j], genes[i + j]
            i += depth

    def forward(self, x: torch.Tensor, genome: Genome) -> torch.Tensor:
        x = quantize_activation(x, genome.stem.a_bits, signed=True)
        first = genome.blocks[0] if genome.blocks else None
        stem_out_bits = (first.expand or first.dw).a_bits if first else genome.classifier.a_bits
        x = quantize_activation(F.relu(self.stem(x, genome.stem_channels, genome.stem_kernel, genome.stem.w_bits)),
                                stem_out_bits, signed=False)
        for n, (block, gene) in enumerate(self._stage_blocks(genome)):
            x = block(x, gene, quantize_input=n > 0)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if genome.blocks:
            x = quantize_activation(x, genome.classifier.a_bits, signed=True)
        w = quantize_weight(self.classifier_weight[:, : x.shape[1]], genome.classifier.w_bits, per_channel=False)
        return F.linear(x, w, self.classifier_bias)

    def sort_channels(self) -> None:
        for blocks in self.stages:
            for block in blocks:
                block.sort_hidden_channels()

    # ---- the sandwich rule's subnets ----------------------------------------------------------
    def extreme_genome(self, largest: bool, bits_share: float = 1.0) -> Genome:
        """The largest (or smallest) architecture at the highest (or lowest) bit-widths among the
        top ``bits_share`` of each bit-width list."""
        pick = max if largest else min

        class Extreme:
            def suggest_categorical(self, name: str, choices: Any) -> Any:
                if name.endswith("_bits"):
                    return pick(allowed_bits(choices, bits_share), key=_bit_value)
                return pick(choices)

        return sample_genome(Extreme(), self.space, in_channels=self.in_channels, resolution=self.resolution,
                             num_classes=self.num_classes)

    def random_genome(self, generator: torch.Generator, bits_share: float = 1.0, level: float | None = None,
                      spread: float = 0.25) -> Genome:
        """A random architecture and bit assignment, bit-widths drawn from the top ``bits_share``.

        Architectural choices are uniform, or, given a size ``level`` (0: the smallest, 1: the
        largest), read from each sorted list at ``level`` plus Gaussian noise of ``spread`` list
        lengths, so that the choices agree in size without being equal (``children_sizes: spread``)."""
        class Random:
            def suggest_categorical(self, name: str, choices: Any) -> Any:
                if name.endswith("_bits"):
                    choices = allowed_bits(choices, bits_share)
                elif level is not None:
                    ordered = sorted(choices)
                    at = level + spread * float(torch.randn((), generator=generator))
                    return ordered[min(len(ordered) - 1, max(0, int(at * len(ordered))))]
                return choices[int(torch.randint(len(choices), (1,), generator=generator))]

        return sample_genome(Random(), self.space, in_channels=self.in_channels, resolution=self.resolution,
                             num_classes=self.num_classes)


def _bit_value(choice: Any) -> int:
    return FLOAT_BITS if choice == "float" else int(choice)


def allowed_bits(choices: Any, share: float) -> list[Any]:
    """The top ``share`` of a bit-width list (at least its highest choice), highest first."""
    ordered = sorted(choices, key=_bit_value, reverse=True)
    return ordered[: max(1, math.ceil(share * len(ordered) - 1e-9))]


def stage_depths(genome: Genome, space: SearchSpace) -> list[int]:
    """How many of the Genome's blocks each stage of ``space`` holds (the Genome stores blocks, not
    stages). The first assignment consistent with the space's choices is returned; when several
    fit (two stages that could look alike), they describe the same network, so any is right."""
    genes = genome.blocks

    def fits(stage: Any, block: BlockGene, first: bool) -> bool:
        return (block.out_channels in stage.channels and block.expansion in stage.expansion
                and block.kernel in stage.kernel and block.stride == (stage.stride if first else 1))

    def search(s: int, i: int) -> list[int] | None:
        if s == len(space.stages):
            return [] if i == len(genes) else None
        stage = space.stages[s]
        for d in sorted(stage.depth):
            run = genes[i : i + d]
            if len(run) < d or any(b.out_channels != run[0].out_channels for b in run):
                continue
            if all(fits(stage, b, j == 0) for j, b in enumerate(run)):
                rest = search(s + 1, i + d)
                if rest is not None:
                    return [d, *rest]
        return None

    depths = search(0, 0)
    if depths is None:
        raise SpaceError(f"genome does not belong to search space {space.name!r} (its blocks match no stage layout)")
    return depths


def train_supernet(net: Supernet, x: torch.Tensor, y: torch.Tensor, cfg: SupernetConfig,
                   progress: Callable[[int, int, float], None] | None = None) -> dict[str, float]:
    """Sandwich-rule training with in-place distillation; returns steps, seconds, final loss."""
    from flightco.train import one_cycle

    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    n = len(y)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(total))
    largest = net.extreme_genome(True)
    # which bit-widths the children may use at each step (see SupernetConfig.children_bits)
    if cfg.children_bits not in ("top", "random"):
        raise ValueError(f"children_bits must be top or random, got {cfg.children_bits!r}")
    if cfg.children_bits == "top":
        share_at = lambda st: 0.0  # noqa: E731 - the top choice of every bit-width list only
    elif cfg.bit_warmup <= 0:
        share_at = lambda st: 1.0  # noqa: E731
    else:
        share_at = lambda st: min(1.0, (st + 1) / (cfg.bit_warmup * total))  # noqa: E731
    smallest, smallest_share = net.extreme_genome(False, share_at(0)), share_at(0)
    if cfg.children_sizes not in ("choices", "spread"):
        raise ValueError(f"children_sizes must be choices or spread, got {cfg.children_sizes!r}")

    def random_child(share: float) -> Genome:
        level = float(torch.rand((), generator=g)) if cfg.children_sizes == "spread" else None
        return net.random_genome(g, share, level)

    start = time.perf_counter()
    step, loss_value = 0, float("nan")
    net.train()
    while step < total:
        order = torch.randperm(n, generator=g)
        for i in range(0, n, cfg.batch_size):
            if step >= total:
                break
            idx = order[i : i + cfg.batch_size]
            if len(idx) < 2:
                continue
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            teacher = net(xb, largest)
            loss = F.cross_entropy(teacher, yb)
            loss.backward()
            soft = F.softmax(teacher.detach() / cfg.distill_temperature, dim=1)
            share = share_at(step)
            if share != smallest_share:
                smallest, smallest_share = net.extreme_genome(False, share), share
            children = [smallest] + [random_child(share) for _ in range(cfg.random_subnets)]
            for child in children:
                logits = net(xb, child)
                kd = F.kl_div(F.log_softmax(logits / cfg.distill_temperature, dim=1), soft, reduction="batchmean")
                kd.backward()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                from flightco.train import DivergedError

                raise DivergedError(f"supernet training diverged at step {step}: loss is {loss_value}")
            opt.step()
            sched.step()
            step += 1
            if cfg.sort_every_steps and step % cfg.sort_every_steps == 0:
                net.sort_channels()
            if progress is not None:
                progress(step, total, loss_value)
    net.sort_channels()
    return {"steps": step, "seconds": time.perf_counter() - start, "final_loss": loss_value}


# ---- subnet extraction ------------------------------------------------------------------------


def _copy_conv(dst: nn.Module, src: ElasticConvBN, cin: int, cout: int, k: int, bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.active_weight(cin, cout, k))
        bn.weight.copy_(src.bn_weight[:cout])
        bn.bias.copy_(src.bn_bias[:cout])


def extract(net: Supernet, genome: Genome, calibration: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """The ordinary Brevitas model of ``genome`` with inherited weights, its activation scales
    collected and its BatchNorm statistics recomputed on ``calibration`` images (eval mode)."""
    from flightco.nn.mobilenet import build_model
    from flightco.train import exact_batchnorm_average

    batches = max(1, math.ceil(len(calibration) / batch_size))
    model = build_model(genome, collect_stats_steps=batches)
    _copy_conv(model.stem.conv, net.stem, genome.in_channels, genome.stem_channels, genome.stem_kernel, model.stem.bn)
    c = genome.stem_channels
    for mblock, (sblock, gene) in zip(model.blocks, net._stage_blocks(genome)):
        hidden = c * gene.expansion
        if gene.expand is not None:
            _copy_conv(mblock.expand.conv, sblock.expand, c, hidden, 1, mblock.expand.bn)
        _copy_conv(mblock.dw.conv, sblock.dw, hidden, hidden, gene.kernel, mblock.dw.bn)
        _copy_conv(mblock.project.conv, sblock.project, hidden, gene.out_channels, 1, mblock.project.bn)
        c = gene.out_channels
    with torch.no_grad():
        model.classifier.weight.copy_(net.classifier_weight[:, :c])
        model.classifier.bias.copy_(net.classifier_bias)
    # One set of training-mode passes does both jobs: Brevitas collects each activation scale's
    # runtime statistics over them, and BatchNorm averages its statistics over the same images
    # (a second pass only for BN cost 0.12 s a subnet and changed its fine-tuned score nowhere).
    model.train()
    with exact_batchnorm_average(model), torch.no_grad():
        for b in range(batches):
            model(calibration[b * batch_size : (b + 1) * batch_size])
    model.eval()
    return model


FINETUNE_BATCH = 64
FINETUNE_BN_BATCHES = 4
"""BatchNorm batches re-estimated after a few steps: the 256 calibration images' worth, not the 20
batches of a full training, whose fixed cost would dominate a few dozen steps."""


def train_steps(model: nn.Module, train: Any, steps: int, lr: float, seed: int) -> None:
    """``steps`` QAT steps at batch ``FINETUNE_BATCH`` (one-cycle schedule): fine-tuning an
    extracted subnet at its own bits, or the same budget from scratch for comparison."""
    from flightco.train import TrainConfig, train_qat

    per_epoch = math.ceil(len(train) / FINETUNE_BATCH)
    train_qat(model, train, TrainConfig(epochs=steps / per_epoch, batch_size=FINETUNE_BATCH, lr=lr, seed=seed,
                                        bn_calibration_batches=FINETUNE_BN_BATCHES))


LATER_DEFAULTS = {"children_sizes": "choices"}
"""Settings added after supernets were first stored, and their defaults: a setting at its
default stays out of the key, so checkpoints trained before it existed are still found."""


def supernet_key(space_text: str, dataset: dict[str, Any], cfg: SupernetConfig) -> str:
    """What a trained supernet depends on: the space, the data and the training settings (not the
    hardware: one supernet serves every target, Once-for-All's point)."""
    import hashlib
    import json

    settings = {k: v for k, v in cfg.__dict__.items() if LATER_DEFAULTS.get(k, object()) != v}
    blob = json.dumps({"space": space_text, "dataset": dataset, "cfg": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
