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

from collections.abc import Mapping
from typing import Literal, NamedTuple

from flightco.space import FLOAT_BITS, Genome, Precision

POW2_TERM_BITS = 4

Op = Literal["conv", "dwconv", "linear", "add", "pool"]
OPS: tuple[str, ...] = ("conv", "dwconv", "linear", "add", "pool")


class LayerWorkload(NamedTuple):
    """One fused kernel. ``h``/``w`` are the input's spatial size; padding is ``k // 2``.

    A named tuple rather than a dataclass: immutable and hashable like one, but built several
    times faster, and cost prediction builds one per kernel per candidate.
    """

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
    w_terms: float = 0.0  # FLightNN: mean power-of-two terms per weight (0: fixed point)

    @property
    def out_h(self) -> int:
        return self.out_hw[0]

    @property
    def out_w(self) -> int:
        return self.out_hw[1]

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output spatial size (one computation for both, this is on the prediction hot path)."""
        op = self.op
        if op == "conv" or op == "dwconv":
            pad, k, s = self.k // 2, self.k, self.stride
            return (self.h + 2 * pad - k) // s + 1, (self.w + 2 * pad - k) // s + 1
        if op == "linear" or op == "pool":
            return 1, 1
        return self.h, self.w

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
            oh, ow = self.out_hw
            return self.params * oh * ow
        if self.op == "linear":
            return self.params
        if self.op == "pool":
            return self.cin * self.h * self.w
        return self.cout * self.h * self.w  # add

    @property
    def weight_bits(self) -> float:
        """Stored bits per weight: ``w_bits``, or for FLightNN weights 4 bits per term (a sign and
        a 3-bit code for one of 7 exponents or "no term")."""
        return POW2_TERM_BITS * self.w_terms if self.w_terms else self.w_bits

    @property
    def weight_bytes(self) -> float:
        return self.params * self.weight_bits / 8 + (4 * self.cout if self.params else 0)

    @property
    def input_bytes(self) -> float:
        n = self.cin * self.h * self.w
        return n * self.a_bits / 8 * (2 if self.op == "add" else 1)

    @property
    def output_bytes(self) -> float:
        oh, ow = self.out_hw
        return self.cout * oh * ow * self.out_bits / 8


def conv_out(size: int, k: int, stride: int) -> int:
    """Output size of a convolution with padding ``k // 2`` (PyTorch's formula)."""
    pad = k // 2
    return (size + 2 * pad - k) // stride + 1


def workload(genome: Genome, realised_terms: Mapping[str, float] | None = None) -> list[LayerWorkload]:
    """The fused kernels of ``genome`` in execution order, with shapes and bit-widths.

    FLightNN layers are priced at their ``k_max`` terms per weight unless ``realised_terms``
    (kernel name -> mean terms per weight after training) says how many they really use.
    """
    specs: list[tuple] = []  # LayerWorkload fields but out_bits, linked once the order is known
    terms: dict[str, float] = {}

    def add(*fields, precision: Precision | None = None) -> tuple[int, int]:
        specs.append(fields)
        if precision is not None and precision.w_terms:
            name = fields[0]
            terms[name] = (realised_terms or {}).get(name, float(precision.w_terms))
        op, h, w, k, stride = fields[1], fields[4], fields[5], fields[6], fields[7]
        if op in ("conv", "dwconv"):
            return conv_out(h, k, stride), conv_out(w, k, stride)
        return h, w

    h = w = genome.resolution
    h, w = add("stem", "conv", genome.in_channels, genome.stem_channels, h, w,
               genome.stem_kernel, genome.stem_stride, 1, genome.stem.w_bits, genome.stem.a_bits, precision=genome.stem)
    c = genome.stem_channels
    for i, b in enumerate(genome.blocks):
        name = f"block{i}"
        block_in_c, block_in_h = c, h
        hidden = c * b.expansion
        if b.expand is not None:
            add(f"{name}.expand", "conv", c, hidden, h, w, 1, 1, 1, b.expand.w_bits, b.expand.a_bits,
                precision=b.expand)
        h, w = add(f"{name}.dw", "dwconv", hidden, hidden, h, w, b.kernel, b.stride, hidden, b.dw.w_bits, b.dw.a_bits,
                   precision=b.dw)
        add(f"{name}.project", "conv", hidden, b.out_channels, h, w, 1, 1, 1, b.project.w_bits, b.project.a_bits,
            precision=b.project)
        if b.stride == 1 and block_in_c == b.out_channels and block_in_h == h:
            add(f"{name}.add", "add", b.out_channels, b.out_channels, h, w, 1, 1, 1, FLOAT_BITS, b.project.a_bits)
        c = b.out_channels
    add("pool", "pool", c, c, h, w, h, 1, c, FLOAT_BITS, genome.classifier.a_bits)
    add("classifier", "linear", c, genome.num_classes, 1, 1, 1, 1, 1,
        genome.classifier.w_bits, genome.classifier.a_bits, precision=genome.classifier)
    # each kernel writes its output at the bits its consumer reads (logits: float)
    return [LayerWorkload(*f, out_bits=specs[i + 1][10] if i + 1 < len(specs) else FLOAT_BITS,
                          w_terms=terms.get(f[0], 0.0))
            for i, f in enumerate(specs)]


def peak_activation_bytes(layers: list[LayerWorkload]) -> float:
    """Peak bytes of live activations when kernels run one after another.

    While a kernel runs its input and output are live; inside a residual block the block's
    input also stays live until the addition consumes it.
    """
    blocks_with_add = {lw.name.split(".")[0] for lw in layers if lw.op == "add"}
    peak = 0.0
    skip_live = 0.0
    previous = ""
    for layer in layers:
        name = layer.name
        inp = layer.input_bytes
        if name.endswith(".expand") or (name.endswith(".dw") and not previous.endswith(".expand")):
            skip_live = inp if name.split(".")[0] in blocks_with_add else 0.0
        live = inp + layer.output_bytes
        if layer.op == "add":
            skip_live = 0.0
        else:
            live += skip_live
        peak = max(peak, live)
        previous = name
    return peak


def weight_bytes(layers: list[LayerWorkload]) -> float:
    """Bytes of all weights at their bit-widths (biases at 32 bits)."""
    return sum(layer.weight_bytes for layer in layers)


def total_macs(layers: list[LayerWorkload]) -> int:
    return sum(layer.macs for layer in layers if layer.op in ("conv", "dwconv", "linear"))
