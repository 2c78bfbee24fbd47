"""Workload extraction and the BitFusion-like analytic profile."""


import pytest
import yaml

from flightco.errors import ProfileError
from flightco.hw.profile import load_profile
from flightco.hw.workload import LayerWorkload, conv_out, peak_activation_bytes, workload
from flightco.space import BlockGene, Genome, Precision

from conftest import BITFUSION


def small_genome(bits: int = 8) -> Genome:
    p = Precision(bits, bits)
    return Genome(
        in_channels=1, resolution=28, num_classes=10, stem_channels=16, stem_kernel=3, stem_stride=2, stem=p,
        blocks=(
            BlockGene(16, 1, 3, 1, None, p, p),   # no expand, residual
            BlockGene(24, 6, 5, 2, p, p, p),      # downsampling, no residual
        ),
        classifier=p,
    )


def test_workload_shapes_and_macs():
    layers = {lw.name: lw for lw in workload(small_genome())}
    assert list(layers) == ["stem", "block0.dw", "block0.project", "block0.add",
                            "block1.expand", "block1.dw", "block1.project", "pool", "classifier"]
    stem = layers["stem"]
    assert (stem.out_h, stem.out_w) == (14, 14)
    assert stem.macs == 16 * 1 * 9 * 14 * 14
    dw = layers["block1.dw"]
    assert dw.cin == dw.cout == dw.groups == 96 and dw.k == 5 and (dw.out_h, dw.out_w) == (7, 7)
    assert dw.macs == 96 * 25 * 7 * 7
    assert layers["classifier"].macs == 24 * 10
    # a layer's output is written at the bits its consumer reads
    assert layers["stem"].out_bits == layers["block0.dw"].a_bits


def test_conv_out_matches_pytorch_padding():
    assert conv_out(28, 3, 2) == 14 and conv_out(7, 5, 2) == 4 and conv_out(14, 1, 1) == 14


def test_weight_bytes_scale_with_bits():
    w8 = sum(lw.params for lw in workload(small_genome(8)))
    layers4 = workload(small_genome(4))
    assert sum(lw.weight_bytes for lw in layers4) < sum(lw.weight_bytes for lw in workload(small_genome(8)))
    assert w8 == sum(lw.params for lw in layers4)


def test_peak_activation_keeps_skip_alive():
    layers = workload(small_genome())
    peak = peak_activation_bytes(layers)
    biggest_pair = max(lw.input_bytes + lw.output_bytes for lw in layers)
    assert peak >= biggest_pair


@pytest.fixture(scope="module")
def bitfusion():
    return load_profile(BITFUSION)


def test_executed_precision_rounds_up_to_bricks(bitfusion):
    assert [bitfusion.executed_bits(b) for b in (2, 3, 4, 5, 6, 8, 32)] == [2, 4, 4, 8, 8, 8, 16]


def test_fewer_bits_never_cost_more_and_unsupported_bits_cost_like_the_next(bitfusion):
    layer = LayerWorkload("l", "conv", 64, 64, 14, 14, 3, 1, 1, 8, 8, 8)
    costs = {b: bitfusion.layer_cost(layer._replace(w_bits=b, a_bits=b, out_bits=b)) for b in (2, 3, 4, 6, 8)}
    assert costs[2].energy_mj <= costs[4].energy_mj < costs[8].energy_mj
    assert costs[2].latency_ms <= costs[4].latency_ms < costs[8].latency_ms
    assert costs[3] == costs[4] and costs[6] == costs[8]


def test_whole_network_costs_drop_with_bits(bitfusion):
    c8 = bitfusion.cost(workload(small_genome(8)))
    c4 = bitfusion.cost(workload(small_genome(4)))
    assert c4.energy_mj < c8.energy_mj and c4.latency_ms <= c8.latency_ms and c4.memory_kb < c8.memory_kb
    assert len(c8.layers) == len(workload(small_genome(8)))
    assert c8.energy_mj == pytest.approx(sum(lc.energy_mj for lc in c8.layers))


def _write_profile(tmp_path, edit):
    data = yaml.safe_load(BITFUSION.read_text())
    edit(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d["energy"].__setitem__("dram_pj_per_bit", -1), "energy.dram_pj_per_bit"),
        (lambda d: d.__setitem__("kind", "quantum"), "kind must be one of"),
        (lambda d: d["array"].pop("rows"), "array.rows"),
        (lambda d: d["memory"].__setitem__("extra", 1), "memory.extra: unknown field"),
    ],
)
def test_malformed_profile_is_one_line_error(tmp_path, edit, expected):
    path = _write_profile(tmp_path, edit)
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert expected in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_profile_yaml_syntax_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="invalid YAML"):
        load_profile(path)


def test_eyeriss_like_profile_gains_nothing_below_8_bits_in_compute():
    from conftest import ROOT

    eyeriss = load_profile(ROOT / "hw_profiles" / "eyeriss.yaml")
    assert [eyeriss.executed_bits(b) for b in (2, 4, 6, 8, 32)] == [8, 8, 8, 8, 16]
    layer = LayerWorkload("l", "conv", 64, 64, 14, 14, 3, 1, 1, 8, 8, 8)
    c4 = eyeriss.layer_cost(layer._replace(w_bits=4, a_bits=4, out_bits=4))
    c8 = eyeriss.layer_cost(layer)
    assert c4.energy_mj == c8.energy_mj and c4.latency_ms == c8.latency_ms
    # while the bit-fusion array does profit
    bitfusion = load_profile(BITFUSION)
    assert bitfusion.layer_cost(layer._replace(w_bits=4, a_bits=4, out_bits=4)).energy_mj < bitfusion.layer_cost(layer).energy_mj
