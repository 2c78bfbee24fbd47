"""BitFusion's dataflow, layer by layer: loop tiling, loop order, buffer traffic, cycles, energy.

A re-derivation (own code, numpy) of the cost model in the BitFusion authors' simulator
(Sharma et al., ISCA 2018; github.com/hsharma35/bitfusion, ``src/simulator`` and
``src/optimizer/optimizer.py``), so that a flightco profile with the paper's configuration
behaves like that simulator on every layer:

* **Array.** ``rows`` (N) x ``cols`` (M) fusion units. The reduction over input channels runs
  down the rows, output channels across the columns; at ``w`` x ``a`` bits a fusion unit fuses
  its 2-bit BitBricks into ``(max/a) * (max/w)`` (integer parts) narrower MACs that all reduce
  over more input channels, so one array pass covers ``N * perf`` input channels. Kernel
  rows/columns and output pixels are loops in time. A layer whose input has very few channels
  (the network's first layer) is run im2col: its ``k*k*cin`` window is the reduction instead.
* **Depthwise convolutions** (an extension the simulator lacks, same hardware): every output
  channel reduces over its own input channel only, so a column shares nothing with its
  neighbours' inputs and the reduction is 1 deep: channels go across the columns, one row of
  the array is busy, the kernel window is a loop in time, and fewer bits buy no speed (there
  is nothing to fuse along). That is why depthwise layers are 10-30x slower per MAC.
* **Tiling and loop order.** Batch, output rows/columns (one tile size for both), input and
  output channels are split into power-of-two tiles (output channels in multiples of M); a
  tile's weights, inputs and 32-bit partial sums must each fit in half its buffer (double
  buffering). For every loop order the DRAM traffic follows from which loops a tensor depends
  on: walking from the innermost loop out, a tensor's fetch grows with each loop it depends on
  while it still fits on chip, and once it does not it is refetched on every iteration of all
  outer loops. Partial sums are kept at 32 bits and written to and read back from DRAM.
  The search keeps the fewest cycles (then least energy), like the simulator's optimizer.
* **Cycles** = compute cycles + memory stalls, where stalls are the DRAM transfers that do not
  overlap compute plus the first fill and the last drain over the ``if_width``-bit interface.
* **Energy** = core energy per compute cycle (the whole array is clocked, used or not) +
  per-bit SRAM reads/writes of the weight, input and output buffers (CACTI, per the bank
  geometry) + per-bit DRAM energy.

Everything is per batch of ``batch`` inputs (the paper used 16); callers divide by the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np

PSUM_BITS = 32

# which tensors a tiled loop indexes: (act, wgt, out)
_DEPS_DENSE = {"B": (1, 0, 1), "OW": (1, 0, 1), "OH": (1, 0, 1), "IC": (1, 1, 0), "OC": (0, 1, 1)}
_DEPS_DW = {"B": (1, 0, 1), "OW": (1, 0, 1), "OH": (1, 0, 1), "C": (1, 1, 1)}


@dataclass(frozen=True)
class BitFusionConfig:
    """The accelerator parameters the model needs (bits and bytes as the simulator's conf.ini)."""

    rows: int
    cols: int
    max_bits: int
    min_bits: int
    wbuf_bytes: int
    ibuf_bytes: int
    obuf_bytes: int
    if_width_bits: int
    batch: int
    im2col_max_cin: int
    core_pj_per_cycle: float
    wbuf_read_pj_bit: float
    wbuf_write_pj_bit: float
    ibuf_read_pj_bit: float
    ibuf_write_pj_bit: float
    obuf_read_pj_bit: float
    obuf_write_pj_bit: float
    dram_pj_bit: float


@dataclass(frozen=True)
class LayerStats:
    """One layer over one batch: cycles and accesses in bits, energies in pJ."""

    cycles: float
    compute_cycles: float
    stall_cycles: float
    dram_bits: float
    sram_bits: float
    core_pj: float
    sram_pj: float
    dram_pj: float
    order: tuple[str, ...]
    tiles: tuple[int, ...]
    stationary: str

    @property
    def energy_pj(self) -> float:
        return self.core_pj + self.sram_pj + self.dram_pj


def perf_factor(cfg: BitFusionConfig, a_bits: int, w_bits: int) -> int:
    """MACs one fusion unit does per cycle at these bits: ``int(max/a) * int(max/w)``."""
    a, w = max(a_bits, cfg.min_bits), max(w_bits, cfg.min_bits)
    return max(1, cfg.max_bits // a) * max(1, cfg.max_bits // w)


def _cdiv(a, b):
    return -(-a // b)


def _pow2_tiles(total: int, unit: int = 1) -> list[int]:
    """Tile sizes ``min(2**i * unit, total)`` as the simulator's optimizer enumerates them."""
    n = max(1, _cdiv(total, unit))
    return sorted({min((1 << i) * unit, total) for i in range(int(math.ceil(math.log2(n))) + 1)})


@lru_cache(maxsize=1024)
def _orders(loops: tuple[str, ...]) -> np.ndarray:
    """All loop orders, outermost first, as indices into ``loops``."""
    return np.array(list(permutations(range(len(loops)))), dtype=np.int64)


def layer_stats(cfg: BitFusionConfig, op: str, cin: int, cout: int, oh: int, ow: int, k: int, stride: int,
                a_bits: int, w_bits: int) -> LayerStats:
    """Cost of one conv/dwconv/linear layer at executed bits over one batch (see module doc)."""
    if op == "linear":
        k, oh, ow, stride = 1, 1, 1, 1
    depthwise = op == "dwconv"
    im2col = op == "conv" and cin <= cfg.im2col_max_cin
    return _layer_stats(cfg, depthwise, im2col, cin, cout, oh, ow, k, stride, a_bits, w_bits)


@lru_cache(maxsize=65536)
def _layer_stats(cfg: BitFusionConfig, depthwise: bool, im2col: bool, IC: int, OC: int, OH: int, OW: int,
                 K: int, S: int, iprec: int, wprec: int) -> LayerStats:
    N, M, B = cfg.rows, cfg.cols, cfg.batch
    pf = perf_factor(cfg, iprec, wprec)
    caps = np.array([cfg.ibuf_bytes, cfg.wbuf_bytes, cfg.obuf_bytes], dtype=float) * 8 / 2  # double buffered

    b_t = _pow2_tiles(B)
    o_t = _pow2_tiles(max(OH, OW))
    if depthwise:
        loops = ("B", "OW", "OH", "C")
        c_t = _pow2_tiles(OC, M)
        grid = np.array(np.meshgrid(b_t, o_t, c_t, indexing="ij")).reshape(3, -1).astype(float)
        b, o, c = grid
        ic, oc = np.ones_like(c), c
        totals = {"B": B, "OW": OW, "OH": OH, "C": OC}
        sizes = {"B": b, "OW": np.minimum(o, OW), "OH": np.minimum(o, OH), "C": c}
    else:
        loops = ("B", "OW", "OH", "IC", "OC")
        ic_t = _pow2_tiles(IC)
        oc_t = _pow2_tiles(OC, 1 if im2col else M)
        grid = np.array(np.meshgrid(b_t, o_t, ic_t, oc_t, indexing="ij")).reshape(4, -1).astype(float)
        b, o, ic, oc = grid
        totals = {"B": B, "OW": OW, "OH": OH, "IC": IC, "OC": OC}
        sizes = {"B": b, "OW": np.minimum(o, OW), "OH": np.minimum(o, OH), "IC": ic, "OC": oc}
    tw, th = sizes["OW"], sizes["OH"]
    nums = np.stack([np.ceil(totals[name] / sizes[name]) for name in loops])  # loops x tilings
    n_tiles = nums.prod(axis=0)
    oc_pad = np.ceil(oc / M) * M

    # one tile's footprint (bits), as the simulator sizes it
    # reduction per output padded to whole array passes (a depthwise output reduces over its own channel)
    red = K * K * (np.ones_like(oc) if depthwise else ic)
    red_pad = np.ceil(red / (N * pf)) * N * pf
    wgt = red_pad * oc * wprec
    if im2col:
        act = tw * th * K * K * ic * b * iprec
    else:
        act = (K + (tw - 1) * S) * (K + (th - 1) * S) * (oc if depthwise else ic) * b * iprec
    out = tw * th * oc_pad * b * PSUM_BITS
    tile = np.stack([act, wgt, out])  # ns x tilings
    fits = np.all(tile <= caps[:, None], axis=0)
    if not fits.any():  # nothing fits half the buffers: keep the smallest tiles rather than fail
        fits = n_tiles == n_tiles.max()
    tile, nums, n_tiles = tile[:, fits], nums[:, fits], n_tiles[fits]
    b, tw, th, ic, oc, oc_pad, red_pad = (x[fits] for x in (b, tw, th, ic, oc, oc_pad, red_pad))

    # DRAM traffic per loop order (orders x tilings), walking loops from the innermost out
    deps = np.array([(_DEPS_DW if depthwise else _DEPS_DENSE)[name] for name in loops], dtype=bool)  # loops x ns
    orders = _orders(loops)
    n_ord = len(orders)
    size = np.broadcast_to(tile[:, None, :], (3, n_ord, tile.shape[1])).copy()
    peak = size.copy()
    promote = np.ones_like(size, dtype=bool)
    for pos in range(len(loops) - 1, -1, -1):
        idx = orders[:, pos]  # the loop at this depth, per order
        num = nums[idx]  # orders x tilings
        dep = deps[idx].T[:, :, None]  # ns x orders x 1
        size *= np.where(promote & ~dep, 1.0, num[None])
        grow = promote & dep
        over = size > caps[:, None, None]
        peak = np.where(grow & ~over, size, peak)
        promote &= ~(grow & over)
    fetched = size.sum(axis=0) + size[2]  # fills of act, wgt, out + partial sums written back
    first = peak.sum(axis=0)
    last = peak[2]
    middle = fetched - first - last
    W = cfg.if_width_bits

    # cycles of one tile's compute, times the tiles
    if depthwise:
        per_tile = b * np.ceil(oc / M) * tw * th * K * K
    elif im2col:
        per_tile = b * th * tw * np.ceil(oc / M) * np.ceil(K * K * ic / (N * pf))
    else:
        per_tile = b * np.ceil(oc / M) * tw * th * K * K * np.ceil(ic / (N * pf))
    compute = n_tiles * per_tile
    stalls = np.maximum(0.0, np.ceil(middle / W) - compute[None]) + np.ceil(first / W) + np.ceil(last / W)
    cycles = compute[None] + stalls

    # buffer accesses of the inner loops: the stationarity with the least estimated traffic
    ws = b * th * tw
    if depthwise:
        is_l, os_l = np.ones_like(oc), np.full_like(oc, float(K * K))
        pe = oc  # independent channels in the tile
    else:
        is_l, os_l = oc_pad, red_pad * (1 if im2col else K * K)
        pe = np.ones_like(oc)
    est = np.stack([(os_l * ws) * (iprec + is_l * (wprec + PSUM_BITS)),
                    (is_l * ws) * (PSUM_BITS + os_l * (iprec + wprec)),
                    (os_l * is_l) * (wprec + ws * (iprec + PSUM_BITS))]) * pe
    choice = est.argmin(axis=0)
    kk_ic = K * K * (1 if depthwise else ic)
    c_out = oc if not depthwise else oc  # outputs per pixel in the tile
    macs_tile = kk_ic * ws * c_out
    act_r = np.choose(choice, [macs_tile / c_out * (oc if depthwise else 1), macs_tile, macs_tile]) * iprec
    out_rw = np.choose(choice, [macs_tile, c_out * ws, macs_tile]) * PSUM_BITS
    wgt_r = np.choose(choice, [macs_tile, macs_tile, kk_ic * c_out]) * wprec
    act_r, out_rw, wgt_r = act_r * n_tiles, out_rw * n_tiles, wgt_r * n_tiles

    # energy (orders x tilings): the buffer fills come from the per-order DRAM traffic
    fill_pj = (size[0] * cfg.ibuf_write_pj_bit + size[1] * cfg.wbuf_write_pj_bit
               + size[2] * (cfg.obuf_write_pj_bit + cfg.obuf_read_pj_bit))
    inner_pj = (act_r * cfg.ibuf_read_pj_bit + wgt_r * cfg.wbuf_read_pj_bit
                + out_rw * (cfg.obuf_read_pj_bit + cfg.obuf_write_pj_bit))
    core_pj = compute * cfg.core_pj_per_cycle
    dram_pj = fetched * cfg.dram_pj_bit
    energy = core_pj[None] + inner_pj[None] + fill_pj + dram_pj

    best = np.lexsort((energy.ravel(), cycles.ravel()))[0]
    oi, ti = np.unravel_index(best, cycles.shape)
    return LayerStats(
        cycles=float(cycles[oi, ti]), compute_cycles=float(compute[ti]), stall_cycles=float(stalls[oi, ti]),
        dram_bits=float(fetched[oi, ti]),
        sram_bits=float(size[:, oi, ti].sum() + size[2, oi, ti] + act_r[ti] + wgt_r[ti] + 2 * out_rw[ti]),
        core_pj=float(core_pj[ti]), sram_pj=float(fill_pj[oi, ti] + inner_pj[ti]), dram_pj=float(dram_pj[oi, ti]),
        order=tuple(loops[i] for i in orders[oi]), tiles=tuple(int(nums[i, ti]) for i in range(len(loops))),
        stationary=("input", "output", "weight")[int(choice[ti])],
    )
