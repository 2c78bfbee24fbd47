"""Analytic accelerator profiles: a bit-flexible spatial array with a roofline.

The model follows BitFusion (Sharma et al., ISCA 2018): a 2-D array of fusion units, each
made of 2-bit "BitBricks". A fusion unit does one 8x8-bit MAC per cycle, or fuses its bricks
into ``(8/w_bits) * (8/a_bits)`` narrower MACs; bit-widths the bricks do not support round
up to the next one that they do. Per layer:

* compute cycles = MACs / (units * MACs-per-unit-cycle at the executed bits * utilization),
  where utilization is how well the layer's reduction and output dimensions fill the array's
  rows and columns (a depthwise kernel reduces over only k*k values, so it fills few rows);
* memory cycles = DRAM bytes / DRAM bandwidth (weights are streamed from DRAM unless all of
  them fit in the on-chip weight buffer; activations spill to DRAM when a layer's input or
  output does not fit in the activation buffer);
* latency = max(compute, memory) cycles / clock (a roofline);
* energy = MACs * energy per MAC at the executed bits + SRAM bytes * pJ/byte + DRAM bytes *
  pJ/byte + static power * latency.

The energies per operation and per byte come from the profile YAML, which cites its sources.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flightco.errors import ProfileError
from flightco.hw.profile import HardwareProfile, LayerCost, register_profile_kind, round_up_bits
from flightco.hw.workload import LayerWorkload, weight_bytes
from flightco.yamlio import validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArraySpec(_Strict):
    rows: int = Field(gt=0, description="reduction dimension mapped over rows")
    cols: int = Field(gt=0, description="output channels mapped over columns")
    max_bits: int = Field(8, gt=0, description="bits one fusion unit handles in one cycle")
    clock_mhz: float = Field(gt=0)
    vector_lanes: int = Field(64, gt=0, description="lanes of the elementwise unit (add, pool)")


class EnergySpec(_Strict):
    """Energies in picojoules."""

    mac_8x8_pj: float = Field(gt=0, description="one 8x8-bit multiply + accumulate")
    accumulate_pj: float = Field(ge=0, description="share of a MAC that does not shrink with bits")
    elementwise_pj: float = Field(gt=0, description="one 8-bit add in the vector unit")
    sram_pj_per_byte: float = Field(gt=0)
    dram_pj_per_byte: float = Field(gt=0)
    static_mw: float = Field(0.0, ge=0, description="leakage and clock power while running")


class MemorySpec(_Strict):
    weight_buffer_kb: float = Field(gt=0)
    activation_buffer_kb: float = Field(gt=0)
    dram_bytes_per_cycle: float = Field(gt=0)
    sram_bytes_per_cycle: float = Field(gt=0)


class PowerOfTwoSpec(_Strict):
    """How the array runs FLightNN weights (sums of signed power-of-two terms).

    A term ``±2**e`` times an ``a``-bit activation is one ``bits_per_term``-bit weight slice
    (sign and a single 1 bit) whose partial product is shifted by ``e`` before the add: on
    BitFusion that is one column of 2-bit bricks, so a k-term weight occupies the bricks of a
    ``bits_per_term * k``-bit weight, and each term pays a variable shift.
    """

    bits_per_term: int = Field(2, gt=0, description="weight bits one term occupies in the array")
    shift_pj_per_term: float = Field(ge=0, description="variable shift of one term's partial product")


class AnalyticSpec(_Strict):
    name: str
    kind: str
    description: str = ""
    sources: list[str] = Field(default_factory=list)
    supported_bits: list[int] = Field(min_length=1, description="bit-widths the array runs natively")
    float_bits: int = Field(16, gt=0, description="what an unquantized layer runs at")
    array: ArraySpec
    energy: EnergySpec
    memory: MemorySpec
    power_of_two: PowerOfTwoSpec | None = Field(
        None, description="shift-add execution of FLightNN weights; without it they run as int8")

    @field_validator("supported_bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 32 for b in v):
            raise ValueError("supported_bits must lie between 1 and 32")
        return sorted(set(v))


@register_profile_kind("analytic")
class AnalyticProfile(HardwareProfile):
    """A BitFusion-like bit-flexible accelerator; see the module docstring for the model."""

    def __init__(self, spec: AnalyticSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.supports_power_of_two = spec.power_of_two is not None

    @classmethod
    def from_yaml(cls, data: dict[str, Any], source: str) -> AnalyticProfile:
        return cls(validate(AnalyticSpec, data, source, ProfileError))

    # ---- precision --------------------------------------------------------------------
    def executed_bits(self, bits: int) -> int:
        return round_up_bits(bits, self.spec.supported_bits, self.spec.float_bits)

    def macs_per_unit_cycle(self, w_bits: int, a_bits: int) -> float:
        """BitBrick fusion: ``(max/w) * (max/a)`` MACs per cycle, fewer above ``max_bits``."""
        m = self.spec.array.max_bits
        return (m / w_bits) * (m / a_bits)

    def mac_energy_pj(self, w_bits: int, a_bits: int) -> float:
        """Multiplier energy scales with the bricks used (w*a); accumulation does not."""
        e = self.spec.energy
        mult = e.mac_8x8_pj - e.accumulate_pj
        return mult * (w_bits * a_bits) / 64 + e.accumulate_pj

    # ---- utilization --------------------------------------------------------------------
    def utilization(self, layer: LayerWorkload) -> float:
        """Fraction of the array a layer keeps busy: reduction over rows, outputs over columns."""
        a = self.spec.array
        if layer.op == "dwconv":
            reduce, outputs = layer.k * layer.k, layer.cout
        elif layer.op == "conv":
            reduce, outputs = (layer.cin // layer.groups) * layer.k * layer.k, layer.cout
        else:  # linear
            reduce, outputs = layer.cin, layer.cout
        row_fill = reduce / (math.ceil(reduce / a.rows) * a.rows)
        col_fill = outputs / (math.ceil(outputs / a.cols) * a.cols)
        return row_fill * col_fill

    # ---- cost ---------------------------------------------------------------------------
    def weights_resident(self, layers: Sequence[LayerWorkload]) -> bool:
        """Whether all weights, at executed bits, fit the on-chip weight buffer."""
        executed = [self.at_executed_precision(layer) for layer in layers]
        return weight_bytes(executed) <= self.spec.memory.weight_buffer_kb * 1024

    def layer_costs(self, layers: Sequence[LayerWorkload],
                    executed: Sequence[LayerWorkload] | None = None) -> tuple[LayerCost, ...]:
        # Whether weights stay on chip depends on the whole network, so decide it once here.
        resident = self.weights_resident(layers)
        return tuple(self.layer_cost(layer, weights_resident=resident) for layer in layers)

    def layer_cost(self, layer: LayerWorkload, *, weights_resident: bool = False) -> LayerCost:
        s = self.spec
        x = self.at_executed_precision(layer)
        act_buffer = s.memory.activation_buffer_kb * 1024
        resident = weights_resident

        if x.op in ("conv", "dwconv", "linear"):
            units = s.array.rows * s.array.cols
            # FLightNN weights (only present when the profile runs them as shift-adds) occupy
            # the bricks of a bits_per_term * terms wide weight and pay a shift per term
            w_eff = x.w_terms * s.power_of_two.bits_per_term if x.w_terms and s.power_of_two else x.w_bits
            rate = units * self.macs_per_unit_cycle(w_eff, x.a_bits) * self.utilization(x)
            compute_cycles = x.macs / rate
            op_pj = x.macs * self.mac_energy_pj(w_eff, x.a_bits)
            if x.w_terms and s.power_of_two:
                op_pj += x.macs * x.w_terms * s.power_of_two.shift_pj_per_term
            # inputs are re-read from SRAM once per tile of output channels
            col_tiles = 1 if x.op == "dwconv" else math.ceil(x.cout / s.array.cols)
            sram_bytes = x.input_bytes * col_tiles + x.output_bytes + x.weight_bytes
        else:  # add / pool run on the vector unit
            compute_cycles = x.macs / s.array.vector_lanes
            op_pj = x.macs * s.energy.elementwise_pj
            sram_bytes = x.input_bytes + x.output_bytes

        dram_bytes = 0.0 if resident else x.weight_bytes
        if x.input_bytes > act_buffer:
            dram_bytes += x.input_bytes
        if x.output_bytes > act_buffer:
            dram_bytes += x.output_bytes

        memory_cycles = dram_bytes / s.memory.dram_bytes_per_cycle + sram_bytes / s.memory.sram_bytes_per_cycle
        cycles = max(compute_cycles, memory_cycles)
        latency_s = cycles / (s.array.clock_mhz * 1e6)
        energy_pj = (
            op_pj
            + sram_bytes * s.energy.sram_pj_per_byte
            + dram_bytes * s.energy.dram_pj_per_byte
            + s.energy.static_mw * 1e-3 * latency_s * 1e12
        )
        return LayerCost(
            name=layer.name,
            op=layer.op,
            latency_ms=latency_s * 1e3,
            energy_mj=energy_pj * 1e-9,
            executed_w_bits=math.ceil(w_eff) if x.op in ("conv", "dwconv", "linear") else x.w_bits,
            executed_a_bits=x.a_bits,
            bound="compute" if compute_cycles >= memory_cycles else "memory",
        )
