"""The analytic profiles pinned to figures derived by hand from BitFusion's paper and simulator
equations (bf_e_conf.ini: 16x32 array, 64/32/16 KB buffers halved by double buffering, 192-bit
DRAM interface, batch 16, 235.104 pJ per core cycle, 15 pJ per DRAM bit), and to the facts known
about that simulator: depthwise layers 10-20x slower per MAC than 1x1 ones, 1x1 layers mostly
memory-bound (W4A4 ~0.84x of W8A8), 6-bit costs what 8-bit costs."""

import statistics

import pytest
import yaml

from flightco.errors import ProfileError
from flightco.hw.bitfusion_model import perf_factor
from flightco.hw.profile import load_profile
from flightco.hw.workload import LayerWorkload

from conftest import BITFUSION, ROOT

BATCH, CLOCK = 16, 500e6


@pytest.fixture(scope="module")
def bf():
    return load_profile(BITFUSION)


def L(op, cin, cout, h, k=1, s=1, bits=8):
    return LayerWorkload("l", op, cin, cout, h, h, k, s, cin if op == "dwconv" else 1, bits, bits, bits)


def test_brick_fusion_factor_is_the_simulators(bf):
    cfg = bf.model.cfg
    # int(8/a) * int(8/w), 2-bit bricks: 3 bits fuse like 4, 5-7 like 8
    assert [perf_factor(cfg, a, w) for a, w in [(8, 8), (4, 4), (2, 2), (2, 8), (6, 6), (3, 3)]] == [1, 4, 16, 4, 1, 4]


@pytest.mark.parametrize("bits, perf, compute", [(8, 1, 16 * 4 * 196 * 4), (4, 4, 16 * 4 * 196 * 1),
                                                 (2, 16, 16 * 4 * 196 * 1)])
def test_1x1_layer_by_hand(bf, bits, perf, compute):
    """64->128 channels, 14x14, batch 16: compute = B * ceil(128/32) * 14*14 * ceil(64 / (16*perf))
    (at 2 bits the 64 input channels no longer fill the fused rows: no gain over 4 bits). DRAM: each
    tensor once (everything fits), partial sums 32-bit out and back: the memory-bound floor."""
    st, _ = bf.stats(L("conv", 64, 128, 14, bits=bits))
    assert st.compute_cycles == compute
    # weights are laid out in whole fused row passes: ceil(64 / (16*perf)) * 16*perf per output channel
    rows = -(-64 // (16 * perf)) * 16 * perf
    act, wgt, psum = 64 * 196 * BATCH * bits, rows * 128 * bits, 128 * 196 * BATCH * 32
    assert st.dram_bits == act + wgt + 2 * psum
    assert st.cycles == pytest.approx(max(compute, st.dram_bits / 192), rel=0.01)  # memory-bound
    assert st.core_pj == pytest.approx(compute * 235.104)
    assert st.dram_pj == pytest.approx(st.dram_bits * 15)
    cost = bf.layer_cost(L("conv", 64, 128, 14, bits=bits))
    assert cost.latency_ms == pytest.approx(st.cycles / CLOCK / BATCH * 1e3)
    assert cost.energy_mj == pytest.approx(st.energy_pj / BATCH * 1e-9)
    assert cost.bound == "memory"


@pytest.mark.parametrize("bits, per_pass", [(8, 4), (4, 1), (2, 1)])
def test_3x3_dense_layer_by_hand(bf, bits, per_pass):
    """64->64, 3x3, 14x14: compute = B * ceil(64/32) * 14*14 * 9 * ceil(64 / (16*perf))."""
    st, _ = bf.stats(L("conv", 64, 64, 14, k=3, bits=bits))
    assert st.compute_cycles == BATCH * 2 * 196 * 9 * per_pass
    assert st.cycles >= st.compute_cycles


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_depthwise_layer_by_hand(bf, bits):
    """128 channels, 3x3, 14x14: channels across the 32 columns, one row busy, kernel window in time:
    B * ceil(128/32) * 14*14 * 9 cycles at every bit-width (nothing to fuse along)."""
    st, _ = bf.stats(L("dwconv", 128, 128, 14, k=3, bits=bits))
    assert st.compute_cycles == BATCH * 4 * 196 * 9
    # inputs and outputs each cross DRAM at least once (partial sums out and back at 32 bits)
    assert st.dram_bits >= 128 * 196 * BATCH * (bits + 64) + 128 * 9 * bits


def _mobilenet_v2_224() -> list[LayerWorkload]:
    """The 1x1, depthwise and dense layers of MobileNetV2-1.0 at 224x224 (Sandler et al. 2018)."""
    layers = [L("conv", 3, 32, 224, k=3, s=2)]
    c, h = 32, 112
    for t, co, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)]:
        for i in range(n):
            stride, hidden = (s if i == 0 else 1), c * t
            if t != 1:
                layers.append(L("conv", c, hidden, h))
            layers.append(L("dwconv", hidden, hidden, h, k=3, s=stride))
            h = (h + 2 - 3) // stride + 1
            layers.append(L("conv", hidden, co, h))
            c = co
    return layers + [L("conv", 320, 1280, 7)]


def test_known_facts_of_the_simulator_on_mobilenet_layers(bf):
    layers = _mobilenet_v2_224()

    def lat(lw, b):
        return bf.layer_cost(lw._replace(w_bits=b, a_bits=b, out_bits=b)).latency_ms

    dw = statistics.median(lat(lw, 8) / lw.macs for lw in layers if lw.op == "dwconv")
    pw_layers = [lw for lw in layers if lw.op == "conv" and lw.k == 1]
    pw = statistics.median(lat(lw, 8) / lw.macs for lw in pw_layers)
    assert 10 <= dw / pw <= 20  # depthwise 10-20x slower per MAC
    w4 = statistics.median(lat(lw, 4) / lat(lw, 8) for lw in pw_layers)
    assert 0.75 <= w4 <= 0.95  # 1x1 mostly memory-bound: W4A4 ~0.84x of W8A8, not 0.25x
    for lw in layers[::5]:
        c6, c8 = (bf.layer_cost(lw._replace(w_bits=b, a_bits=b, out_bits=b)) for b in (6, 8))
        assert c6.latency_ms == c8.latency_ms and c6.energy_mj == c8.energy_mj
        c2, c4 = (bf.layer_cost(lw._replace(w_bits=b, a_bits=b, out_bits=b)) for b in (2, 4))
        assert c2.latency_ms <= c4.latency_ms <= c8.latency_ms and c2.energy_mj <= c4.energy_mj <= c8.energy_mj


def test_batch_and_sizes_are_profile_parameters(tmp_path, bf):
    data = yaml.safe_load(BITFUSION.read_text())
    data["batch"] = 1
    data["memory"]["dram_interface_bits"] = 96
    path = tmp_path / "b1.yaml"
    path.write_text(yaml.safe_dump(data))
    narrow = load_profile(path)
    st, _ = narrow.stats(L("conv", 64, 128, 14))
    assert st.compute_cycles == 4 * 196 * 4  # one input
    # half the DRAM interface: a memory-bound layer takes about twice as long per input
    ratio = narrow.layer_cost(L("conv", 64, 128, 14)).latency_ms / bf.layer_cost(L("conv", 64, 128, 14)).latency_ms
    assert 1.6 < ratio < 2.2


def test_network_prices_warm_from_the_shape_cache(bf):
    from flightco.hw.workload import workload
    from flightco.measure import sample_genomes
    from flightco.space import SearchSpace

    genome = sample_genomes(SearchSpace.load(ROOT / "search_spaces" / "mobilenet.yaml"), 1, 0)[0]
    layers = workload(genome)
    first = bf.cost(layers)
    assert bf.cost(layers) == first and len(bf._cache) >= len({lw[1:] for lw in layers})


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["energy"].__setitem__("accumulate_pj", 1.0), "energy"),
    (lambda d: d["energy"].__setitem__("glb_x", 500), "energy"),
])
def test_inconsistent_eyeriss_energies_are_refused(tmp_path, edit, field):
    data = yaml.safe_load((ROOT / "hw_profiles" / "eyeriss.yaml").read_text())
    edit(data)
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert str(path) in msg and field in msg and "\n" not in msg


def test_dram_cheaper_than_sram_is_refused(tmp_path):
    data = yaml.safe_load(BITFUSION.read_text())
    data["energy"]["dram_pj_per_bit"] = 0.01
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="dram_pj_per_bit"):
        load_profile(path)


def test_unknown_dataflow_is_one_line_error(tmp_path):
    data = yaml.safe_load(BITFUSION.read_text())
    data["dataflow"] = "systolic"
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="dataflow must be one of bitfusion, row_stationary"):
        load_profile(path)


def test_eyeriss_depthwise_reuses_less_than_dense():
    ey = load_profile(ROOT / "hw_profiles" / "eyeriss.yaml")
    dense, dw = L("conv", 64, 64, 14, k=3), L("dwconv", 64, 64, 14, k=3)
    # per MAC, a depthwise layer moves more data (no input reuse across filters)
    assert ey.layer_cost(dw).energy_mj / dw.macs > ey.layer_cost(dense).energy_mj / dense.macs
    # 16-bit (float) layers cost more energy than 8-bit ones
    assert ey.layer_cost(dense._replace(w_bits=32, a_bits=32, out_bits=32)).energy_mj > ey.layer_cost(dense).energy_mj


def test_reproduces_the_authors_simulator_layer_by_layer(bf):
    """Every layer of the paper's BitFusion-vs-Eyeriss sweep (results/bitfusion-eyeriss-sim-sweep.csv,
    192-bit interface): cycles, memory stalls, DRAM traffic and energy as the authors' simulator
    computed them."""
    from flightco.hw.bitfusion_model import _layer_stats
    from flightco.hw.bitfusion_reference import LAYERS, reference_energy_pj

    cfg = bf.model.cfg
    for row in LAYERS:
        net, name, K, O, S, IC, OC, ib, wb, im2col = row[:10]
        st = _layer_stats(cfg, False, im2col, IC, OC, O, O, K, S, ib, wb)
        assert (st.cycles, st.stall_cycles, st.dram_bits) == (row[10], row[11], row[18] + row[19]), (net, name)
        assert st.energy_pj == pytest.approx(reference_energy_pj(row, bf.spec.energy), rel=1e-9), (net, name)
