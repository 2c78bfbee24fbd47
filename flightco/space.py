"""Search spaces and the Genome: one torch-free point of a space.

A search space is YAML data (``search_spaces/*.yaml``) describing a MobileNetV2-style network:
a stem convolution, stages of inverted-residual blocks (depth, channels, expansion ratio,
kernel size per block) and the bit-widths each layer may use. ``sample_genome`` asks an
Optuna trial for every choice (define-by-run, stable dotted names such as
``"s2.b0.dw.w_bits"``) and returns a :class:`Genome`.

The Genome is the one currency of flightco: frozen, hashable, JSON-serialisable, stored on
the Optuna trial, and enough to rebuild the exact model later (for export) and to price it
on any hardware profile without torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flightco.errors import SpaceError
from flightco.yamlio import load_model

FLOAT_BITS = 32
"""Bit-width used to mean 'not quantized' (float32). YAML may write ``float``."""

ALLOWED_BITS = (2, 3, 4, 5, 6, 8, FLOAT_BITS)


FLIGHT_CONTAINER_BITS = 8
"""FLightNN weights are integers below 2**7 times a power-of-two scale: int8 containers."""

MAX_FLIGHT_TERMS = 4

_FLIGHT = re.compile(r"^flight\(\s*(\d+)\s*(?:,\s*([0-9.eE+-]+)\s*)?\)$")


def parse_flight(v: Any) -> tuple[int, float] | None:
    """``"flight(k_max, lambda)"`` -> ``(k_max, lambda)``; ``None`` for anything else."""
    if not isinstance(v, str):
        return None
    m = _FLIGHT.match(v.strip().lower().replace(" ", ""))
    if m is None:
        return None
    try:
        k, lam = int(m.group(1)), float(m.group(2) or 0.0)
    except ValueError:
        return None
    if not 1 <= k <= MAX_FLIGHT_TERMS or not 0 <= lam < math.inf:
        return None
    return k, lam


def flight_choice(k: int, lam: float) -> str:
    """The canonical spelling of a FLightNN choice (also its Optuna categorical value)."""
    return f"flight({k},{lam:g})"


def _parse_bits(values: list[Any], field: str, allow_flight: bool = False) -> list[int | str]:
    out: list[int | str] = []
    for v in values:
        if isinstance(v, str) and v.strip().lower() in ("float", "fp32", "float32"):
            v = FLOAT_BITS
        if allow_flight and isinstance(v, str) and v.strip().lower().startswith("flight"):
            parsed = parse_flight(v)
            if parsed is None:
                raise ValueError(f"{field}: {v!r} is not flight(k_max, lambda) with k_max in 1..{MAX_FLIGHT_TERMS}"
                                 " and a finite lambda >= 0, e.g. flight(2, 1e-3)")
            out.append(flight_choice(*parsed))
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v not in ALLOWED_BITS:
            extra = ", 'float'" if not allow_flight else " or flight(k_max, lambda)"
            raise ValueError(f"{field} must be chosen from 2, 3, 4, 5, 6, 8{extra}, got {v!r}")
        out.append(v)
    if not out:
        raise ValueError(f"{field} needs at least one choice")
    ints = sorted({v for v in out if isinstance(v, int)})
    flights = sorted({v for v in out if isinstance(v, str)})
    return [*ints, *flights]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StemSpec(_Strict):
    channels: list[int] = Field(min_length=1)
    kernel: int = Field(3, ge=1, le=7)
    stride: int = Field(2, ge=1, le=2)

    @field_validator("channels")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError("channels must be positive integers")
        return v


class StageSpec(_Strict):
    depth: list[int] = Field(min_length=1)
    channels: list[int] = Field(min_length=1)
    expansion: list[int] = Field(min_length=1)
    kernel: list[int] = Field(min_length=1)
    stride: int = Field(1, ge=1, le=2)

    @field_validator("depth", "channels", "expansion")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError("choices must be positive integers")
        return v

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: list[int]) -> list[int]:
        if any(k < 1 or k % 2 == 0 or k > 7 for k in v):
            raise ValueError("kernel sizes must be odd, between 1 and 7")
        return v


class PrecisionSpec(_Strict):
    """Which bit-widths layers may use. ``first_last`` applies to the stem and the classifier.

    ``w_bits`` may also offer ``flight(k_max, lambda)``: FLightNN weights, each a sum of at most
    ``k_max`` powers of two with per-filter term counts trained under a cost regularizer of
    strength ``lambda`` (see :mod:`flightco.nn.flight`).
    """

    w_bits: list[int | str] = Field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    a_bits: list[int] = Field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    first_last_bits: list[int] = Field(default_factory=lambda: [4, 6, 8, FLOAT_BITS])
    granularity: Literal["layer", "block"] = "layer"

    @field_validator("w_bits", "a_bits", "first_last_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any, info: Any) -> list[int | str]:
        if not isinstance(v, list):
            raise ValueError("expected a list of bit-widths")
        return _parse_bits(v, info.field_name, allow_flight=info.field_name == "w_bits")

    @field_validator("w_bits", "a_bits")
    @classmethod
    def _no_float_inside(cls, v: list[Any], info: Any) -> list[Any]:
        if FLOAT_BITS in v:
            raise ValueError(f"{info.field_name}: 'float' is only allowed in first_last_bits")
        return v


class SearchSpace(_Strict):
    """A MobileNetV2-style space: stem, stages of inverted-residual blocks, precision choices."""

    name: str
    stem: StemSpec
    stages: list[StageSpec] = Field(min_length=1)
    precision: PrecisionSpec = Field(default_factory=PrecisionSpec)

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Load and validate a search-space YAML file (errors are one line naming the field)."""
        return load_model(Path(path), cls, SpaceError)


# --------------------------------------------------------------------------------------------
# Genome


@dataclass(frozen=True)
class Precision:
    """Bit-widths of one layer: its weights and the activations it consumes (32 = float).

    ``w_terms > 0`` makes the weights FLightNN sums of at most ``w_terms`` powers of two (held
    in int8 containers, ``w_bits`` = 8), trained with term regularizer ``w_lambda``.
    """

    w_bits: int
    a_bits: int
    w_terms: int = 0
    w_lambda: float = 0.0

    @property
    def is_float(self) -> bool:
        return self.w_bits >= FLOAT_BITS and self.a_bits >= FLOAT_BITS

    @property
    def is_flight(self) -> bool:
        return self.w_terms > 0

    def label(self) -> str:
        w = "f" if self.w_bits >= FLOAT_BITS else str(self.w_bits)
        if self.is_flight:
            w = f"P{self.w_terms}"
        a = "f" if self.a_bits >= FLOAT_BITS else str(self.a_bits)
        return f"W{w}A{a}"


@dataclass(frozen=True)
class BlockGene:
    """One inverted-residual block: 1x1 expand (absent when expansion is 1), depthwise kxk, 1x1 project."""

    out_channels: int
    expansion: int
    kernel: int
    stride: int
    expand: Precision | None
    dw: Precision
    project: Precision


@dataclass(frozen=True)
class Genome:
    """One point of the space: architecture plus the precision of every layer.

    ``in_channels``, ``resolution`` and ``num_classes`` describe the data the network is built
    for, so that a Genome alone is enough to rebuild the model and to price it.
    """

    in_channels: int
    resolution: int
    num_classes: int
    stem_channels: int
    stem_kernel: int
    stem_stride: int
    stem: Precision
    blocks: tuple[BlockGene, ...]
    classifier: Precision

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genome:
        try:
            blocks = tuple(
                BlockGene(
                    out_channels=b["out_channels"],
                    expansion=b["expansion"],
                    kernel=b["kernel"],
                    stride=b["stride"],
                    expand=Precision(**b["expand"]) if b["expand"] is not None else None,
                    dw=Precision(**b["dw"]),
                    project=Precision(**b["project"]),
                )
                for b in d["blocks"]
            )
            return cls(
                in_channels=d["in_channels"],
                resolution=d["resolution"],
                num_classes=d["num_classes"],
                stem_channels=d["stem_channels"],
                stem_kernel=d["stem_kernel"],
                stem_stride=d["stem_stride"],
                stem=Precision(**d["stem"]),
                blocks=blocks,
                classifier=Precision(**d["classifier"]),
            )
        except (KeyError, TypeError) as exc:
            raise SpaceError(f"genome is malformed: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> Genome:
        return cls.from_dict(json.loads(text))

    # ---- derived views -------------------------------------------------------------------
    def precisions(self) -> list[Precision]:
        """Every layer's precision in execution order."""
        out = [self.stem]
        for b in self.blocks:
            if b.expand is not None:
                out.append(b.expand)
            out += [b.dw, b.project]
        out.append(self.classifier)
        return out

    def with_uniform_bits(self, bits: int) -> Genome:
        """The same architecture with every layer (first and last included) at ``bits``/``bits``."""
        p = Precision(bits, bits)
        blocks = tuple(
            replace(b, expand=p if b.expand is not None else None, dw=p, project=p)
            for b in self.blocks
        )
        return replace(self, stem=p, blocks=blocks, classifier=p)

    def arch_key(self) -> str:
        """A key that ignores precision: two genomes with the same key share an architecture."""
        arch = [self.stem_channels] + [
            (b.out_channels, b.expansion, b.kernel, b.stride) for b in self.blocks
        ]
        return json.dumps(arch)

    def bits_summary(self) -> str:
        """Compact text like ``W4.1/A5.3 (2-8)``: mean weight/activation bits of quantized layers."""
        qs = [p for p in self.precisions() if not p.is_float]
        if not qs:
            return "float"
        flight = [p for p in qs if p.is_flight]
        if flight:
            fixed = [p for p in qs if not p.is_flight]
            a = [p.a_bits for p in qs if p.a_bits < FLOAT_BITS]
            w = [p.w_bits for p in fixed if p.w_bits < FLOAT_BITS]
            wtext = f"W{sum(w) / len(w):.1f}" if w else "W-"
            return (f"{wtext}/A{sum(a) / len(a):.1f}, {len(flight)} FLightNN layer(s) "
                    f"≤{max(p.w_terms for p in flight)} terms")
        w = [p.w_bits for p in qs if p.w_bits < FLOAT_BITS]
        a = [p.a_bits for p in qs if p.a_bits < FLOAT_BITS]
        lo = min(w + a)
        hi = max(w + a)
        uniform = len({*w, *a}) == 1
        if uniform and len(qs) == len(self.precisions()):
            return f"uniform W{w[0]}A{a[0]}"
        nfloat = len(self.precisions()) - len(qs)
        extra = f", {nfloat} float" if nfloat else ""
        return f"W{sum(w) / len(w):.1f}/A{sum(a) / len(a):.1f} ({lo}-{hi}b{extra})"


class SuggestsCategorical(Protocol):
    """The slice of ``optuna.trial.Trial`` that sampling needs (keeps this module Optuna-free)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def sample_genome(
    trial: SuggestsCategorical,
    space: SearchSpace,
    *,
    in_channels: int,
    resolution: int,
    num_classes: int,
) -> Genome:
    """Sample one Genome, asking ``trial`` for each choice under a stable dotted name."""
    prec = space.precision

    def pick(name: str, choices: list[int]) -> int:
        return int(trial.suggest_categorical(name, list(choices)))

    def layer_precision(prefix: str, w_choices: list[Any], a_choices: list[int]) -> Precision:
        w = trial.suggest_categorical(f"{prefix}.w_bits", list(w_choices))
        a = pick(f"{prefix}.a_bits", a_choices)
        flight = parse_flight(w)
        if flight is not None:
            return Precision(FLIGHT_CONTAINER_BITS, a, w_terms=flight[0], w_lambda=flight[1])
        return Precision(int(w), a)

    stem_channels = pick("stem.channels", space.stem.channels)
    stem = layer_precision("stem", prec.first_last_bits, prec.first_last_bits)
    blocks: list[BlockGene] = []
    for si, stage in enumerate(space.stages, start=1):
        depth = pick(f"s{si}.depth", stage.depth)
        channels = pick(f"s{si}.channels", stage.channels)
        for bi in range(depth):
            name = f"s{si}.b{bi}"
            expansion = pick(f"{name}.expansion", stage.expansion)
            kernel = pick(f"{name}.kernel", stage.kernel)
            if prec.granularity == "block":
                shared = layer_precision(name, prec.w_bits, prec.a_bits)
                expand, dw, project = shared, shared, shared
            else:
                expand = (
                    layer_precision(f"{name}.expand", prec.w_bits, prec.a_bits)
                    if expansion > 1
                    else None
                )
                dw = layer_precision(f"{name}.dw", prec.w_bits, prec.a_bits)
                project = layer_precision(f"{name}.project", prec.w_bits, prec.a_bits)
            blocks.append(
                BlockGene(
                    out_channels=channels,
                    expansion=expansion,
                    kernel=kernel,
                    stride=stage.stride if bi == 0 else 1,
                    expand=expand if expansion > 1 else None,
                    dw=dw,
                    project=project,
                )
            )
    classifier = layer_precision("classifier", prec.first_last_bits, prec.first_last_bits)
    return Genome(
        in_channels=in_channels,
        resolution=resolution,
        num_classes=num_classes,
        stem_channels=stem_channels,
        stem_kernel=space.stem.kernel,
        stem_stride=space.stem.stride,
        stem=stem,
        blocks=tuple(blocks),
        classifier=classifier,
    )
