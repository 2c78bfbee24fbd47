"""Analytic accelerator profiles: the dataflow of a named accelerator, priced layer by layer.

``kind: analytic`` profiles say which dataflow they follow:

* ``dataflow: bitfusion`` -- BitFusion (Sharma et al., ISCA 2018) as its authors' simulator
  models it: loop tiling and loop order chosen per layer to minimise cycles, 32-bit partial
  sums, double-buffered weight/input/output buffers, a DRAM interface of so many bits per
  cycle, core energy per cycle and per-bit SRAM/DRAM energies. See
  :mod:`flightco.hw.bitfusion_model` for the equations.
* ``dataflow: row_stationary`` -- an Eyeriss-like array (Chen et al., ISCA 2016 / JSSC 2017):
  a logical PE set of filter rows x output rows folded onto the physical array, per-PE
  scratch pads that bound how many channels and filters one pass reuses, and access counts
  per level (RF, array NoC, global buffer, DRAM) at the normalised energies Eyeriss reports.
  See :class:`RowStationaryModel`.

Residual additions and pooling run on a vector unit in both (``vector``). Costs are cached
per executed layer shape, so pricing a network is dictionary look-ups once its shapes were
seen (a search meets the same shapes again and again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flightco.errors import ProfileError
from flightco.hw.bitfusion_model import BitFusionConfig, layer_stats
from flightco.hw.profile import HardwareProfile, LayerCost, register_profile_kind, round_up_bits
from flightco.hw.workload import LayerWorkload
from flightco.yamlio import validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VectorSpec(_Strict):
    """The elementwise unit that runs residual adds and pooling."""

    lanes: int = Field(64, gt=0)
    elementwise_pj: float = Field(gt=0, description="one 8-bit add")


class PowerOfTwoSpec(_Strict):
    """How the array runs FLightNN weights (sums of signed power-of-two terms).

    A term ``±2**e`` times an ``a``-bit activation is one ``bits_per_term``-bit weight slice
    (sign and a single 1 bit) whose partial product is shifted by ``e`` before the add: on
    BitFusion that is one column of 2-bit bricks, so a k-term weight occupies the bricks of a
    ``bits_per_term * k``-bit weight, and each term pays a variable shift.
    """

    bits_per_term: int = Field(2, gt=0, description="weight bits one term occupies in the array")
    shift_pj_per_term: float = Field(ge=0, description="variable shift of one term's partial product")


class BitFusionArray(_Strict):
    rows: int = Field(gt=0, description="N: input channels reduced down the rows")
    cols: int = Field(gt=0, description="M: output channels across the columns")
    max_bits: int = Field(8, gt=0, description="bits one fusion unit handles per cycle")
    min_bits: int = Field(2, gt=0, description="bits of one BitBrick")
    clock_mhz: float = Field(gt=0)


class BitFusionMemory(_Strict):
    weight_buffer_kb: float = Field(gt=0)
    input_buffer_kb: float = Field(gt=0)
    output_buffer_kb: float = Field(gt=0)
    dram_interface_bits: int = Field(gt=0, description="bits per cycle between DRAM and the buffers")


class BitFusionEnergy(_Strict):
    """Picojoules: the core per clocked cycle (whole array), buffers and DRAM per bit."""

    core_pj_per_cycle: float = Field(gt=0)
    wbuf_read_pj_per_bit: float = Field(gt=0)
    wbuf_write_pj_per_bit: float = Field(gt=0)
    ibuf_read_pj_per_bit: float = Field(gt=0)
    ibuf_write_pj_per_bit: float = Field(gt=0)
    obuf_read_pj_per_bit: float = Field(gt=0)
    obuf_write_pj_per_bit: float = Field(gt=0)
    dram_pj_per_bit: float = Field(gt=0)

    @model_validator(mode="after")
    def _dram_above_sram(self) -> BitFusionEnergy:
        sram = max(self.wbuf_read_pj_per_bit, self.wbuf_write_pj_per_bit, self.ibuf_read_pj_per_bit,
                   self.ibuf_write_pj_per_bit, self.obuf_read_pj_per_bit, self.obuf_write_pj_per_bit)
        if self.dram_pj_per_bit <= sram:
            raise ValueError(f"dram_pj_per_bit ({self.dram_pj_per_bit}) must exceed every on-chip buffer "
                             f"energy per bit (largest {sram}): DRAM is the costliest level")
        return self


class RowStationaryArray(_Strict):
    rows: int = Field(gt=0, description="PE rows (filter rows of a PE set run down them)")
    cols: int = Field(gt=0, description="PE columns (output rows of a PE set run across them)")
    clock_mhz: float = Field(gt=0)
    ifmap_spad: int = Field(12, gt=0, description="input entries per PE")
    filter_spad: int = Field(224, gt=0, description="weight entries per PE")
    psum_spad: int = Field(24, gt=0, description="partial-sum entries per PE")


class RowStationaryMemory(_Strict):
    global_buffer_kb: float = Field(gt=0)
    dram_bytes_per_cycle: float = Field(gt=0)


class RowStationaryEnergy(_Strict):
    """A MAC's energy and each storage level's access energy as a multiple of it (Eyeriss's
    normalised figures), for words of ``word_bits``."""

    mac_pj: float = Field(gt=0, description="one MAC at the array's word width")
    accumulate_pj: float = Field(0.0, ge=0, description="share of mac_pj that does not shrink with bits")
    word_bits: int = Field(16, gt=0)
    rf_x: float = Field(gt=0)
    noc_x: float = Field(gt=0)
    glb_x: float = Field(gt=0)
    dram_x: float = Field(gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> RowStationaryEnergy:
        if self.accumulate_pj > self.mac_pj:
            raise ValueError(f"accumulate_pj ({self.accumulate_pj}) must not exceed mac_pj ({self.mac_pj}): "
                             "it is a share of one MAC, and a larger one would price narrow MACs below zero")
        if not self.rf_x <= self.noc_x <= self.glb_x <= self.dram_x:
            raise ValueError("access energies must grow with the level: rf_x <= noc_x <= glb_x <= dram_x")
        return self


class _Common(_Strict):
    name: str
    kind: str
    version: str = Field("1", description="bump when the model or its figures change; searches record it")
    description: str = ""
    sources: list[str] = Field(default_factory=list)
    supported_bits: list[int] = Field(min_length=1, description="bit-widths the array runs natively")
    float_bits: int = Field(16, gt=0, description="what an unquantized layer runs at")
    batch: int = Field(1, gt=0, description="inputs processed together; costs are reported per input")
    vector: VectorSpec
    power_of_two: PowerOfTwoSpec | None = Field(
        None, description="shift-add execution of FLightNN weights; without it they run as integers")
    validation: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="what the profile was compared with and how well it did (`profile eval --record`)")

    @field_validator("supported_bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 32 for b in v):
            raise ValueError("supported_bits must lie between 1 and 32")
        return sorted(set(v))


class BitFusionSpec(_Common):
    dataflow: Literal["bitfusion"]
    im2col_max_cin: int = Field(4, ge=0, description="layers with at most this many input channels run im2col")
    array: BitFusionArray
    memory: BitFusionMemory
    energy: BitFusionEnergy


class RowStationarySpec(_Common):
    dataflow: Literal["row_stationary"]
    array: RowStationaryArray
    memory: RowStationaryMemory
    energy: RowStationaryEnergy


_SPECS = {"bitfusion": BitFusionSpec, "row_stationary": RowStationarySpec}


@register_profile_kind("analytic")
class AnalyticProfile(HardwareProfile):
    """An accelerator priced by its dataflow; see the module docstring."""

    def __init__(self, spec: BitFusionSpec | RowStationarySpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.supports_power_of_two = spec.power_of_two is not None
        self._cache: dict[tuple, tuple[float, float, str, int]] = {}
        if isinstance(spec, BitFusionSpec):
            a, m, e = spec.array, spec.memory, spec.energy
            self.model: BitFusionModel | RowStationaryModel = BitFusionModel(BitFusionConfig(
                rows=a.rows, cols=a.cols, max_bits=a.max_bits, min_bits=a.min_bits,
                wbuf_bytes=int(m.weight_buffer_kb * 1024), ibuf_bytes=int(m.input_buffer_kb * 1024),
                obuf_bytes=int(m.output_buffer_kb * 1024), if_width_bits=m.dram_interface_bits, batch=spec.batch,
                im2col_max_cin=spec.im2col_max_cin, core_pj_per_cycle=e.core_pj_per_cycle,
                wbuf_read_pj_bit=e.wbuf_read_pj_per_bit, wbuf_write_pj_bit=e.wbuf_write_pj_per_bit,
                ibuf_read_pj_bit=e.ibuf_read_pj_per_bit, ibuf_write_pj_bit=e.ibuf_write_pj_per_bit,
                obuf_read_pj_bit=e.obuf_read_pj_per_bit, obuf_write_pj_bit=e.obuf_write_pj_per_bit,
                dram_pj_bit=e.dram_pj_per_bit), a.clock_mhz)
        else:
            self.model = RowStationaryModel(spec)

    @classmethod
    def from_yaml(cls, data: dict[str, Any], source: str) -> AnalyticProfile:
        flow = data.get("dataflow")
        if flow not in _SPECS:
            raise ProfileError(f"{source}: dataflow must be one of {', '.join(_SPECS)}, got {flow!r}")
        return cls(validate(_SPECS[flow], data, source, ProfileError))

    def executed_bits(self, bits: int) -> int:
        return round_up_bits(bits, self.spec.supported_bits, self.spec.float_bits)

    def effective_w_bits(self, x: LayerWorkload) -> int:
        """Weight bits the array runs: FLightNN terms occupy ``bits_per_term`` bits each."""
        p2 = self.spec.power_of_two
        return math.ceil(x.w_terms * p2.bits_per_term) if x.w_terms and p2 else x.w_bits

    def layer_cost(self, layer: LayerWorkload, **_: Any) -> LayerCost:
        return self.layer_costs([layer])[0]

    def layer_costs(self, layers: Sequence[LayerWorkload],
                    executed: Sequence[LayerWorkload] | None = None) -> tuple[LayerCost, ...]:
        """Per-kernel costs from the per-shape cache (this is the prediction hot path)."""
        if executed is None:
            executed = [self.at_executed_precision(layer) for layer in layers]
        cache = self._cache
        out = []
        for layer, x in zip(layers, executed):
            key = x[1:]
            hit = cache.get(key)
            if hit is None:
                latency_s, energy_pj, bound, w_eff = self._price(x)
                hit = cache[key] = (latency_s * 1e3, energy_pj * 1e-9, w_eff, x.a_bits, bound)
            out.append(LayerCost(layer.name, layer.op, *hit))
        return tuple(out)

    def _price(self, x: LayerWorkload) -> tuple[float, float, str, int]:
        s = self.spec
        if x.op in ("conv", "dwconv", "linear"):
            w_eff = self.effective_w_bits(x)
            latency_s, energy_pj, bound = self.model.price(x, w_eff)
            if x.w_terms and s.power_of_two:
                energy_pj += x.macs * x.w_terms * s.power_of_two.shift_pj_per_term
            return latency_s, energy_pj, bound, w_eff
        # add / pool: elementwise on the vector unit, operands streamed through the buffers
        clock = s.array.clock_mhz * 1e6
        compute = x.macs / s.vector.lanes
        memory = self.model.stream_cycles(x.input_bytes + x.output_bytes)
        latency_s = max(compute, memory) / clock
        energy_pj = x.macs * s.vector.elementwise_pj + self.model.stream_pj(x.input_bytes + x.output_bytes)
        return latency_s, energy_pj, "compute" if compute >= memory else "memory", x.w_bits

    def stats(self, layer: LayerWorkload):
        """The dataflow model's detailed figures for one layer (tiling, traffic, breakdown)."""
        x = self.at_executed_precision(layer)
        return self.model.detail(x, self.effective_w_bits(x))

    def assumptions(self) -> list[str]:
        """One line per modelling assumption, for `flightco profile show`."""
        return self.model.assumptions()


class BitFusionModel:
    """Adapts :func:`flightco.hw.bitfusion_model.layer_stats` to flightco layers."""

    def __init__(self, cfg: BitFusionConfig, clock_mhz: float) -> None:
        self.cfg = cfg
        self.clock = clock_mhz * 1e6

    def detail(self, x: LayerWorkload, w_bits: int):
        oh, ow = x.out_hw
        groups = x.groups if x.op == "conv" else 1
        return layer_stats(self.cfg, x.op, x.cin // groups, x.cout // groups, oh, ow, x.k, x.stride,
                           x.a_bits, w_bits), groups

    def price(self, x: LayerWorkload, w_bits: int) -> tuple[float, float, str]:
        st, groups = self.detail(x, w_bits)
        b = self.cfg.batch
        bound = "compute" if st.stall_cycles <= 0.5 * st.compute_cycles else "memory"
        return groups * st.cycles / self.clock / b, groups * st.energy_pj / b, bound

    def stream_cycles(self, nbytes: float) -> float:
        return nbytes * 8 / self.cfg.if_width_bits

    def stream_pj(self, nbytes: float) -> float:
        c = self.cfg
        return nbytes * 8 * (c.dram_pj_bit + c.ibuf_write_pj_bit + c.ibuf_read_pj_bit)

    def assumptions(self) -> list[str]:
        c = self.cfg
        return [
            f"array {c.rows}x{c.cols} fusion units (input channels down rows, output channels across columns), "
            f"{c.min_bits}-bit bricks fused up to {c.max_bits} bits, {self.clock / 1e6:g} MHz",
            f"buffers: weights {c.wbuf_bytes // 1024} KB, inputs {c.ibuf_bytes // 1024} KB, outputs "
            f"{c.obuf_bytes // 1024} KB (halved: double buffering); DRAM interface {c.if_width_bits} bits/cycle",
            f"batch {c.batch}; costs per input; partial sums 32-bit, kept in DRAM between tiles",
            "tiling and loop order searched per layer for fewest cycles (then least energy), as BitFusion's optimizer",
            "depthwise: channels across columns, one row busy, no gain from fewer bits (nothing to fuse along)",
            f"layers with <= {c.im2col_max_cin} input channels run im2col (the first layer)",
            f"energy: core {c.core_pj_per_cycle:g} pJ per compute cycle; SRAM per bit (CACTI); DRAM {c.dram_pj_bit:g} pJ/bit",
        ]


class RowStationaryModel:
    """Eyeriss's row-stationary dataflow with access counts per storage level.

    A PE set of ``R`` (filter rows) x ``E`` (output rows) PEs computes one 2-D convolution of one
    channel with one filter: each PE slides a filter row over an input row. Sets are folded onto
    the physical array (output rows beyond its width run in passes; whole sets stack down its
    height for more channels or filters). Inside a PE the scratch pads bound the reuse: ``q``
    channels (``q*R <= ifmap_spad``) and ``p`` filters (``p <= psum_spad``, ``p*q*R <=
    filter_spad``) per pass. From that:

    * RF: 4 accesses per MAC (input, weight, partial-sum read and write);
    * inputs leave the global buffer once per group of ``p`` filters and reach ``R`` PEs each
      over the array network; weights come from DRAM once per fold of the output rows and are
      multicast to the set's columns; partial sums travel ``R-1`` hops down a set per group of
      ``q`` channels and visit the global buffer between channel passes;
    * DRAM: weights per fold, shared by the ``batch`` inputs, inputs once (again per extra fill
      when they overflow the buffer), outputs once.

    Depthwise layers (one channel per filter) get ``p = q = 1``: no reuse across filters. Sets
    narrower than the array (few output rows, FC layers) are placed side by side.
    """

    def __init__(self, spec: RowStationarySpec) -> None:
        self.spec = spec
        self.clock = spec.array.clock_mhz * 1e6

    def _counts(self, x: LayerWorkload, w_bits: int) -> dict[str, float]:
        a = self.spec.array
        oh, ow = x.out_hw
        R = x.k if x.op != "linear" else 1
        E = oh
        depthwise = x.op == "dwconv"
        C = 1 if depthwise else (x.cin // x.groups if x.op != "linear" else x.cin)
        M = x.cout
        passes_e = math.ceil(E / a.cols)
        r_fold = math.ceil(R / a.rows)
        r_phys = min(R, a.rows)
        sets_v = max(1, a.rows // r_phys)
        sets_h = max(1, a.cols // E) if E < a.cols else 1  # narrow sets side by side (FC: one output row)
        util = min(1.0, (r_phys * sets_v / a.rows) * (E * sets_h / (passes_e * a.cols)) * R / (r_fold * r_phys))
        q = 1 if depthwise else max(1, min(C, a.ifmap_spad // max(1, R)))
        p = 1 if depthwise else max(1, min(M, a.psum_spad, a.filter_spad // max(1, q * R)))
        macs = float(x.macs)
        in_el = float(x.cin * x.h * x.w)
        out_el = float(x.cout * oh * ow)
        w_el = float(x.params)
        filter_passes = 1 if depthwise else math.ceil(M / p)
        glb_in = in_el * filter_passes
        ch_passes = math.ceil(C / (q * sets_v))
        glb_psum = out_el * (2 * (ch_passes - 1) + 1)
        batch = self.spec.batch  # a weight fetched once serves the whole batch
        noc = glb_in * R + w_el * passes_e * min(E, a.cols) / batch + out_el * math.ceil(C / q) * max(R - 1, 0)
        glb_bytes = self.spec.memory.global_buffer_kb * 1024
        in_bytes = in_el * x.a_bits / 8
        refills = max(1, math.ceil(in_bytes / glb_bytes))
        dram = w_el * passes_e * w_bits / 8 / batch + in_bytes * refills + out_el * x.out_bits / 8
        return {"macs": macs, "util": util, "rf": 4 * macs, "noc": noc, "glb": glb_in + glb_psum, "dram_bytes": dram}

    def detail(self, x: LayerWorkload, w_bits: int) -> dict[str, float]:
        return self._counts(x, w_bits)

    def price(self, x: LayerWorkload, w_bits: int) -> tuple[float, float, str]:
        s, a, e = self.spec, self.spec.array, self.spec.energy
        c = self._counts(x, w_bits)
        compute = c["macs"] / (a.rows * a.cols * c["util"])
        memory = c["dram_bytes"] / s.memory.dram_bytes_per_cycle
        latency = max(compute, memory) / self.clock
        scale = max(x.a_bits, w_bits) / e.word_bits  # narrower words move fewer bits
        word = e.mac_pj * scale
        mac = (e.mac_pj - e.accumulate_pj) * (x.a_bits * w_bits) / e.word_bits ** 2 + e.accumulate_pj
        energy = (c["macs"] * mac + word * (e.rf_x * c["rf"] + e.noc_x * c["noc"] + e.glb_x * c["glb"])
                  + e.mac_pj * e.dram_x * c["dram_bytes"] * 8 / e.word_bits)
        return latency, energy, "compute" if compute >= memory else "memory"

    def stream_cycles(self, nbytes: float) -> float:
        return nbytes / self.spec.memory.dram_bytes_per_cycle

    def stream_pj(self, nbytes: float) -> float:
        e = self.spec.energy
        return e.mac_pj * (e.dram_x + e.glb_x) * nbytes * 8 / e.word_bits

    def assumptions(self) -> list[str]:
        a, m, e = self.spec.array, self.spec.memory, self.spec.energy
        return [
            f"array {a.rows}x{a.cols} PEs, row-stationary, one MAC per PE and cycle, {a.clock_mhz:g} MHz",
            f"scratch pads per PE: {a.ifmap_spad} inputs, {a.filter_spad} weights, {a.psum_spad} partial sums",
            f"global buffer {m.global_buffer_kb:g} KB; DRAM {m.dram_bytes_per_cycle:g} B/cycle",
            f"energy: MAC {e.mac_pj:g} pJ; RF {e.rf_x:g}x, array {e.noc_x:g}x, buffer {e.glb_x:g}x, DRAM {e.dram_x:g}x a MAC per {e.word_bits}-bit word",
            "access counts are a reuse model of the dataflow (no mapping search), see RowStationaryModel",
        ]
