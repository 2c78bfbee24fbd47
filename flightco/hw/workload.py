"""Genome -> list of fused kernels with their shapes, bit-widths, MACs and bytes (torch-free).

Fusion is decided here, once, the way inference runtimes do it: a convolution, its
BatchNorm (folded into the weights) and its activation run as one kernel, so a profile
never prices BN or ReLU separately. Residual additions and the global pooling are kernels
of their own: they move bytes even though they do few operations.

A layer's ``a_bits`` are the bits of the activations it *consumes*; that is what a
bit-serial or bit-fusion multiplier sees, so it is what MAC costs scale with. Its output is
written at the bits of the layer that consumes it next (``out_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from flightco.space import FLOAT_BITS, Genome

Op = Literal["conv", "dwconv", "linear", "add", "pool"]
OPS: tuple[str, ...] = ("conv", "dwconv", "linear", "add", "pool")


@dataclass(frozen=True)
class LayerWorkload:
    """One fused kernel. ``h``/``w`` are the input's spatial size; padding is ``k // 2``."""

    name: str
    op: Op
    cin: int
    cout: int
    h: int
    w: int
    k: int
    stride: int
    groups: int
    w_bits: int
    a_bits: int
    out_bits: int = FLOAT_BITS

    @property
    def out_h(self) -> int:
        return conv_out(self.h, self.k, self.stride) if self.op in ("conv", "dwconv") else (
            1 if self.op in ("linear", "pool") else self.h
        )

    @property
    def out_w(self) -> int:
        return conv_out(self.w, self.k, self.stride) if self.op in ("conv", "dwconv") else (
            1 if self.op in ("linear", "pool") else self.w
        )

    @property
    def params(self) -> int:
        """Weights (BN folded, bias excluded: it is tiny and kept at 32 bits by every runtime)."""
        if self.op in ("conv", "dwconv"):
            return self.cout * (self.cin // self.groups) * self.k * self.k
        if self.op == "linear":
            return self.cout * self.cin
        return 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates (for add/pool: element operations)."""
        if self.op in ("conv", "dwconv"):
            return self.params * self.out_h * self.out_w
        if self.op == "linear":
            return self.params
        if self.op == "pool":
            return self.cin * self.h * self.w
        return self.cout * self.h * self.w  # add

    @property
    def weight_bytes(self) -> float:
        return self.params * self.w_bits / 8 + (4 * self.cout if self.params else 0)

    @property
    def input_bytes(self) -> float:
        n = self.cin * self.h * self.w
        return n * self.a_bits / 8 * (2 if self.op == "add" else 1)

    @property
    def output_bytes(self) -> float:
        return self.cout * self.out_h * self.out_w * self.out_bits / 8


def conv_out(size: int, k: int, stride: int) -> int:
    """Output size of a convolution with padding ``k // 2`` (PyTorch's formula)."""
    pad = k // 2
    return (size + 2 * pad - k) // stride + 1


def workload(genome: Genome) -> list[LayerWorkload]:
    """The fused kernels of ``genome`` in execution order, with shapes and bit-widths."""
    layers: list[LayerWorkload] = []
    h = w = genome.resolution

    def add(layer: LayerWorkload) -> None:
        layers.append(layer)

    stem = LayerWorkload(
        "stem", "conv", genome.in_channels, genome.stem_channels, h, w,
        genome.stem_kernel, genome.stem_stride, 1, genome.stem.w_bits, genome.stem.a_bits,
    )
    add(stem)
    c, h, w = stem.cout, stem.out_h, stem.out_w
    for i, b in enumerate(genome.blocks):
        name = f"block{i}"
        block_in_c, block_in_h = c, h
        hidden = c * b.expansion
        if b.expand is not None:
            add(LayerWorkload(f"{name}.expand", "conv", c, hidden, h, w, 1, 1, 1,
                              b.expand.w_bits, b.expand.a_bits))
        dw = LayerWorkload(f"{name}.dw", "dwconv", hidden, hidden, h, w, b.kernel, b.stride,
                           hidden, b.dw.w_bits, b.dw.a_bits)
        add(dw)
        h, w = dw.out_h, dw.out_w
        add(LayerWorkload(f"{name}.project", "conv", hidden, b.out_channels, h, w, 1, 1, 1,
                          b.project.w_bits, b.project.a_bits))
        if b.stride == 1 and block_in_c == b.out_channels and block_in_h == h:
            bits = b.project.a_bits
            add(LayerWorkload(f"{name}.add", "add", b.out_channels, b.out_channels, h, w, 1, 1,
                              1, FLOAT_BITS, bits))
        c = b.out_channels
    last_bits = genome.classifier.a_bits
    add(LayerWorkload("pool", "pool", c, c, h, w, h, 1, c, FLOAT_BITS, last_bits))
    add(LayerWorkload("classifier", "linear", c, genome.num_classes, 1, 1, 1, 1, 1,
                      genome.classifier.w_bits, genome.classifier.a_bits))
    return _link_output_bits(layers)


def _link_output_bits(layers: list[LayerWorkload]) -> list[LayerWorkload]:
    """Each kernel writes its output at the bits its consumer reads (logits: float)."""
    out = []
    for i, layer in enumerate(layers):
        nxt = layers[i + 1].a_bits if i + 1 < len(layers) else FLOAT_BITS
        out.append(replace(layer, out_bits=nxt))
    return out


def peak_activation_bytes(layers: list[LayerWorkload]) -> float:
    """Peak bytes of live activations when kernels run one after another.

    While a kernel runs its input and output are live; inside a residual block the block's
    input also stays live until the addition consumes it.
    """
    peak = 0.0
    skip_live = 0.0
    for i, layer in enumerate(layers):
        if layer.name.endswith(".expand") or (
            layer.name.endswith(".dw") and not layers[i - 1].name.endswith(".expand")
        ):
            block = layer.name.split(".")[0]
            has_add = any(lw.name == f"{block}.add" for lw in layers)
            skip_live = layer.input_bytes if has_add else 0.0
        live = layer.input_bytes + layer.output_bytes
        if layer.op != "add":
            live += skip_live
        else:
            skip_live = 0.0
        peak = max(peak, live)
    return peak


def weight_bytes(layers: list[LayerWorkload]) -> float:
    """Bytes of all weights at their bit-widths (biases at 32 bits)."""
    return sum(layer.weight_bytes for layer in layers)


def total_macs(layers: list[LayerWorkload]) -> int:
    return sum(layer.macs for layer in layers if layer.op in ("conv", "dwconv", "linear"))
