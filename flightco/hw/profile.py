"""The hardware-profile interface, its result type and the registry of profile kinds.

A profile turns a list of fused kernels (:func:`flightco.hw.workload.workload`) into
latency, energy and memory. Profiles are data (``hw_profiles/*.yaml``); the YAML's ``kind``
picks the class that reads it, through a timm-style registry filled by
:func:`register_profile_kind`.

Every profile declares its *executed precision*: how requested bit-widths map to what the
target really runs (a bit-fusion array rounds 3 bits up to 4; an int8 runtime runs 4 bits as
8). Costs are computed at executed precision, so a search never pays for bits the hardware
cannot exploit, and reports can say so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from flightco.errors import ProfileError
from flightco.hw.workload import LayerWorkload, peak_activation_bytes, weight_bytes
from flightco.space import FLOAT_BITS

METRICS = ("latency_ms", "energy_mj", "memory_kb")
"""The cost metrics every profile returns, units in the names."""


class LayerCost(NamedTuple):
    """One kernel's predicted cost (a named tuple: cheap to build on the prediction hot path)."""

    name: str
    op: str
    latency_ms: float
    energy_mj: float
    executed_w_bits: int
    executed_a_bits: int
    bound: str = ""  # "compute" or "memory" for roofline profiles


@dataclass(frozen=True)
class Costs:
    """Whole-network costs plus the per-kernel breakdown they were summed from."""

    latency_ms: float
    energy_mj: float
    memory_kb: float
    layers: tuple[LayerCost, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, float]:
        return {"latency_ms": self.latency_ms, "energy_mj": self.energy_mj, "memory_kb": self.memory_kb}


class HardwareProfile(ABC):
    """Base class of all profile kinds: ``cost(layers) -> Costs``."""

    name: str
    kind: str
    supports_power_of_two = False
    """Whether FLightNN (power-of-two term) weights run as shift-adds; otherwise they run (and are
    stored) as the int8 integers they are."""

    @abstractmethod
    def executed_bits(self, bits: int) -> int:
        """The bit-width the target really runs when ``bits`` are requested."""

    @abstractmethod
    def layer_cost(self, layer: LayerWorkload) -> LayerCost:
        """Latency and energy of one fused kernel at its executed precision."""

    def layer_costs(self, layers: Sequence[LayerWorkload],
                    executed: Sequence[LayerWorkload] | None = None) -> tuple[LayerCost, ...]:
        """Per-kernel costs; override when a kernel's cost depends on the whole network.
        ``executed`` (the layers at executed precision) may be passed when already computed."""
        return tuple(self.layer_cost(layer) for layer in layers)

    def independent_layer_costs(self, layers: Sequence[LayerWorkload]) -> tuple[LayerCost, ...]:
        """Costs of layers measured one at a time (a per-layer table), not as one network."""
        return tuple(self.layer_costs([layer])[0] for layer in layers)

    def cost(self, layers: Sequence[LayerWorkload]) -> Costs:
        """Sum per-kernel costs; memory = weights at executed bits + peak live activations."""
        executed = [self.at_executed_precision(layer) for layer in layers]
        per_layer = self.layer_costs(layers, executed)
        memory = weight_bytes(executed) + peak_activation_bytes(executed)
        return Costs(
            latency_ms=sum(c.latency_ms for c in per_layer),
            energy_mj=sum(c.energy_mj for c in per_layer),
            memory_kb=memory / 1024,
            layers=per_layer,
        )

    def at_executed_precision(self, layer: LayerWorkload) -> LayerWorkload:
        """The layer as the target runs it (built directly: this is on the prediction hot path)."""
        table = self.__dict__.get("_executed_table")
        if table is None:  # executed_bits is pure: tabulate it once for every bit-width
            table = self.__dict__["_executed_table"] = {b: self.executed_bits(b) for b in range(1, 33)}
        w, a, o = table[layer.w_bits], table[layer.a_bits], table[layer.out_bits]
        terms = layer.w_terms if self.supports_power_of_two else 0.0
        if (w, a, o, terms) == (layer.w_bits, layer.a_bits, layer.out_bits, layer.w_terms):
            return layer
        return LayerWorkload(layer.name, layer.op, layer.cin, layer.cout, layer.h, layer.w, layer.k,
                             layer.stride, layer.groups, w, a, o, terms)

    def describe_precision(self) -> str:
        """One line saying how requested bits map to executed bits, for reports."""
        pairs = [f"{b}->{self.executed_bits(b)}" for b in (2, 3, 4, 5, 6, 8)]
        pow2 = ("power-of-two terms as shift-adds" if self.supports_power_of_two
                else f"power-of-two (FLightNN) weights->{self.executed_bits(8)}-bit integers")
        return (f"{self.name}: requested->executed bits " + ", ".join(pairs)
                + f", float->{self.executed_bits(32)}, {pow2}")


def round_up_bits(bits: int, supported: Sequence[int], float_bits: int) -> int:
    """Executed precision of hardware that runs only ``supported`` (sorted) bit-widths: a requested
    width runs at the next supported one (the widest if none is wide enough); float (32) runs at
    ``float_bits``."""
    if bits >= FLOAT_BITS:
        return float_bits
    for b in supported:
        if b >= bits:
            return b
    return supported[-1]


_KINDS: dict[str, Callable[[dict[str, Any], str], HardwareProfile]] = {}


def register_profile_kind(kind: str) -> Callable[[Any], Any]:
    """Class decorator: make ``kind: <kind>`` in a profile YAML load with this class's ``from_yaml``."""

    def deco(cls: Any) -> Any:
        _KINDS[kind] = cls.from_yaml
        cls.kind = kind
        return cls

    return deco


_BUILTIN_KINDS = {
    "analytic": "flightco.hw.analytic",
    "measured": "flightco.hw.learned",
    "learned": "flightco.hw.learned",
    "block": "flightco.hw.block",
}


def profile_kinds() -> list[str]:
    return sorted(set(_KINDS) | set(_BUILTIN_KINDS))


def load_profile(path: str | Path) -> HardwareProfile:
    """Read a profile YAML and build the profile its ``kind`` names (errors name file and field)."""
    from flightco.yamlio import read_yaml

    path = Path(path)
    return profile_from_data(read_yaml(path, ProfileError), str(path))


def profile_from_data(data: dict[str, Any], source: str) -> HardwareProfile:
    """Build a profile from already-parsed YAML data; ``source`` names it in errors."""
    import importlib

    kind = data.get("kind")
    if kind not in _KINDS and kind in _BUILTIN_KINDS:
        importlib.import_module(_BUILTIN_KINDS[kind])  # runs its @register_profile_kind
    if kind not in _KINDS:
        raise ProfileError(f"{source}: kind must be one of {', '.join(profile_kinds())}, got {kind!r}")
    return _KINDS[kind](data, source)
