"""Genome -> Brevitas MobileNetV2-style model, every layer at its own bit-widths.

Activation quantizers sit where a consumer reads: the ReLU after a convolution is quantized
to the bits of the *next* layer's input, and a block whose input comes from a residual sum
(or a linear bottleneck) quantizes it first with a signed quantizer. So each layer's
``a_bits`` in the Genome is exactly the precision its multipliers see, matching
:mod:`flightco.hw.workload`.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn

from flightco.nn import quant
from flightco.nn.flight import flight_quantizers
from flightco.space import BlockGene, Genome


class ConvBNAct(nn.Module):
    """Convolution + BatchNorm + optional (quantized) ReLU: one fused kernel at inference.

    Args:
        conv: the (quantized) convolution.
        out_channels: channels of the BatchNorm.
        act: the activation (a quantized ReLU carrying the consumer's bits) or ``None`` for a
            linear bottleneck.
    """

    def __init__(self, conv: nn.Module, out_channels: int, act: nn.Module | None) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (optional), depthwise kxk, 1x1 linear projection, skip.

    Args:
        cin: input channels.
        gene: the block's architecture and per-layer precision.
        quantize_input: quantize the block input to the first layer's ``a_bits`` (needed when
            the input is a float residual sum rather than an already-quantized ReLU output).
        collect_stats_steps: statistics-collection steps of the activation quantizers.
    """

    def __init__(self, cin: int, gene: BlockGene, quantize_input: bool, collect_stats_steps: int) -> None:
        super().__init__()
        hidden = cin * gene.expansion
        first = gene.expand if gene.expand is not None else gene.dw
        self.input_quant = (
            quant.identity(first.a_bits, collect_stats_steps) if quantize_input else nn.Identity()
        )
        self.expand = (
            ConvBNAct(
                quant.conv2d(cin, hidden, 1, **quant.weight_kwargs(gene.expand)),
                hidden,
                quant.relu(gene.dw.a_bits, collect_stats_steps),
            )
            if gene.expand is not None
            else nn.Identity()
        )
        self.dw = ConvBNAct(
            quant.conv2d(hidden, hidden, gene.kernel, gene.stride, groups=hidden, **quant.weight_kwargs(gene.dw)),
            hidden,
            quant.relu(gene.project.a_bits, collect_stats_steps),
        )
        self.project = ConvBNAct(
            quant.conv2d(hidden, gene.out_channels, 1, **quant.weight_kwargs(gene.project)),
            gene.out_channels,
            None,
        )
        self.use_skip = gene.stride == 1 and cin == gene.out_channels
        self.output_quant: nn.Module = nn.Identity()  # quantized in the deploy form (flightco.nn.deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        y = self.output_quant(self.project(self.dw(self.expand(x))))
        return x + y if self.use_skip else y


class MobileNet(nn.Module):
    """Stem conv, inverted-residual blocks, global average pool, linear classifier."""

    def __init__(self, genome: Genome, collect_stats_steps: int = quant.DEFAULT_COLLECT_STATS_STEPS) -> None:
        super().__init__()
        self.genome = genome
        steps = collect_stats_steps
        first_block = genome.blocks[0] if genome.blocks else None
        stem_out_bits = (
            (first_block.expand or first_block.dw).a_bits if first_block else genome.classifier.a_bits
        )
        self.input_quant = quant.identity(genome.stem.a_bits, steps)
        self.stem = ConvBNAct(
            quant.conv2d(genome.in_channels, genome.stem_channels, genome.stem_kernel,
                         genome.stem_stride, **quant.weight_kwargs(genome.stem)),
            genome.stem_channels,
            quant.relu(stem_out_bits, steps),
        )
        blocks = []
        c = genome.stem_channels
        for i, gene in enumerate(genome.blocks):
            blocks.append(InvertedResidual(c, gene, quantize_input=i > 0, collect_stats_steps=steps))
            c = gene.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool_quant: nn.Module = nn.Identity()  # quantized in the deploy form (flightco.nn.deploy)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier_quant = quant.identity(genome.classifier.a_bits, steps) if genome.blocks else nn.Identity()
        self.classifier = quant.linear(c, genome.num_classes, **quant.weight_kwargs(genome.classifier))
        self._weigh_flight_regularizers()

    def _weigh_flight_regularizers(self) -> None:
        """Weight each FLightNN layer's term regularizer by its share of the network's MACs, so
        that lambda trades accuracy against the terms that cost the most shift-adds."""
        from flightco.hw.workload import total_macs, workload

        layers = {lw.name: lw.macs for lw in workload(self.genome)}
        total = max(1, total_macs(workload(self.genome)))
        for name, q in flight_quantizers(self):
            q.cost_weight = layers[kernel_name(name)] / total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.input_quant(x)))
        x = torch.flatten(self.pool(self.pool_quant(x)), 1)
        return self.classifier(self.classifier_quant(x))


def kernel_name(module_name: str) -> str:
    """The workload kernel (:mod:`flightco.hw.workload`) a weight layer of :class:`MobileNet` is:
    ``stem.conv`` -> ``stem``, ``blocks.3.dw.conv`` -> ``block3.dw``, ``classifier``."""
    m = re.fullmatch(r"blocks\.(\d+)\.(expand|dw|project)\.conv", module_name)
    if m:
        return f"block{m.group(1)}.{m.group(2)}"
    return module_name.removesuffix(".conv")


def build_model(genome: Genome, collect_stats_steps: int = quant.DEFAULT_COLLECT_STATS_STEPS) -> MobileNet:
    """Build the Brevitas model a Genome describes (weights freshly initialised)."""
    return MobileNet(genome, collect_stats_steps=collect_stats_steps)
