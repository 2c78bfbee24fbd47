"""Network tables, the ONNX workload reader, block-based profiles and their CLI commands."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from flightco.errors import ProfileError
from flightco.hw.block import BlockProfile, fit_block_profile
from flightco.hw.network_table import NetworkRecord, read_network_table, write_network_table
from flightco.hw.onnx_workload import workload_from_onnx
from flightco.hw.profile import load_profile, profile_from_data
from flightco.hw.workload import LayerWorkload, workload
from flightco.space import Genome, SearchSpace

BITFUSION = Path(__file__).resolve().parents[1] / "hw_profiles" / "bitfusion.yaml"

LAYER = {"op": "conv", "cin": 1, "cout": 8, "h": 28, "w": 28, "k": 3, "stride": 2, "groups": 1, "w_bits": 8, "a_bits": 8}


# ---- network tables ---------------------------------------------------------------------------

def _line(**over) -> str:
    data = {"name": "n", "layers": [LAYER, {**LAYER, "op": "pool", "cin": 8, "cout": 8, "h": 14, "w": 14, "k": 14,
                                            "stride": 1, "groups": 8, "w_bits": 32}], "latency_ms": 0.5}
    data.update(over)
    return json.dumps(data)


@pytest.mark.parametrize("line, expected", [
    ("{not json", "line 2: not valid JSON"),
    (_line(name=""), "line 2: field name"),
    (_line(layers=[]), "line 2: field layers"),
    (_line(layers=[{**LAYER, "op": "lstm"}]), "line 2: field layers[0].op: must be one of conv"),
    (_line(layers=[{k: v for k, v in LAYER.items() if k != "cin"}]), "line 2: field layers[0].cin: is required"),
    (_line(layers=[LAYER, {**LAYER, "w_bits": 12}]), "line 2: field layers[1].w_bits: must be 2-8 or 32"),
    (_line(layers=[{**LAYER, "cin": 6, "groups": 4}]), "line 2: field layers[0].groups: must divide cin=6"),
    (_line(latency_ms=-1), "line 2: field latency_ms: must be a positive number"),
    (_line(memory_kb="big"), "line 2: field memory_kb: must be a positive number"),
    ("[1, 2]", "line 2: expected a JSON object"),
])
def test_malformed_network_lines_are_one_line_errors(tmp_path, line, expected):
    path = tmp_path / "nets.jsonl"
    path.write_text(_line() + "\n" + line + "\n")
    with pytest.raises(ProfileError) as exc:
        read_network_table(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and expected in msg


def test_network_table_round_trip_links_out_bits(tmp_path):
    path = tmp_path / "nets.jsonl"
    path.write_text(_line(memory_kb=12.5, source="x.onnx") + "\n\n")
    (rec,) = read_network_table(path)
    assert rec.values == {"latency_ms": 0.5, "memory_kb": 12.5} and rec.notes == {"source": "x.onnx"}
    assert rec.layers[0].out_bits == rec.layers[1].a_bits == 8 and rec.layers[1].out_bits == 32
    write_network_table(tmp_path / "again.jsonl", [rec])
    assert read_network_table(tmp_path / "again.jsonl") == [rec]


# ---- ONNX workloads ---------------------------------------------------------------------------

TINY_SPACE = {
    "name": "tiny", "stem": {"channels": [8], "kernel": 3, "stride": 2},
    "stages": [{"depth": [1], "channels": [8], "expansion": [3], "kernel": [3], "stride": 1},
               {"depth": [1], "channels": [16], "expansion": [1], "kernel": [5], "stride": 2}],
    "precision": {"w_bits": [2, 3, 4, 5, 6], "a_bits": [2, 3, 4, 5, 6], "first_last_bits": [4, 8, "float"]},
}


@pytest.fixture(scope="module")
def tiny_genome(tmp_path_factory) -> Genome:
    from flightco.measure import sample_genomes

    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return sample_genomes(SearchSpace.load(path), 1, seed=3)[0]


def _model(genome: Genome):
    import torch

    from flightco.measure import _prepare
    from flightco.nn.mobilenet import build_model

    torch.manual_seed(0)
    model = build_model(genome, collect_stats_steps=1)
    _prepare(model, torch.randn(4, genome.in_channels, genome.resolution, genome.resolution))
    return model, torch.randn(1, genome.in_channels, genome.resolution, genome.resolution)


def _same_kernels(got: list[LayerWorkload], want: list[LayerWorkload], names: bool = True) -> None:
    """Every kernel equal; element-wise kernels read float tensors in the graph (the Genome workload
    prices them at a neighbouring layer's bits), and so the out_bits of the kernel before them."""
    assert [x.op for x in got] == [x.op for x in want]
    for i, (g, w) in enumerate(zip(got, want)):
        elementwise = w.op in ("add", "pool")
        feeds_elementwise = i + 1 < len(want) and want[i + 1].op in ("add", "pool")
        expect = w._replace(name=w.name if names else g.name, w_terms=0.0,
                            a_bits=32 if elementwise else w.a_bits, out_bits=32 if feeds_elementwise else w.out_bits)
        assert g == expect, f"kernel {i}: {g} != {expect}"


def test_workload_of_a_flightco_export_equals_the_genome_workload(tiny_genome, tmp_path):
    from flightco.export import export_onnx

    model, x = _model(tiny_genome)
    path = tmp_path / "net.onnx"
    export_onnx(model, x, path)
    want = workload(tiny_genome)
    assert any(w.op == "add" for w in want) and any(w.a_bits < 8 for w in want)  # the case is not trivial
    _same_kernels(workload_from_onnx(path), want)


def test_qonnx_bit_widths_are_read_back(tiny_genome, tmp_path):
    from flightco.export import export_qonnx_file

    model, x = _model(tiny_genome)
    path = tmp_path / "net.qonnx.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx_file(model, x, path)
    assert any(n.op_type == "Quant" for n in onnx.load(str(path)).graph.node)
    _same_kernels(workload_from_onnx(path), workload(tiny_genome), names=False)


def _qdq_graph(path: Path) -> None:
    """A hand-built QDQ graph: 4-bit weights as an integer Clip before DQ, 3-bit activations as a
    float Clip after DQ, a plain 8-bit QDQ depthwise conv with BN, a residual Add, pooling, Gemm."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.integers(-7, 8, (8, 1, 3, 3)).astype(np.int8), "w1_q"),
        numpy_helper.from_array(rng.integers(-127, 128, (8, 1, 3, 3)).astype(np.int8), "w2_q"),
        numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "zu"),
        numpy_helper.from_array(np.array(0, np.int8), "zi"),
        numpy_helper.from_array(np.array(-7, np.int8), "lo4"), numpy_helper.from_array(np.array(7, np.int8), "hi4"),
        numpy_helper.from_array(np.array(0.0, np.float32), "flo"), numpy_helper.from_array(np.array(0.7, np.float32), "fhi"),
        *[numpy_helper.from_array(np.ones(8, np.float32) * v, n) for n, v in (("g", 1), ("b", 0), ("m", 0), ("v", 1))],
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "zu"], ["xd"]),
        helper.make_node("Clip", ["xd", "flo", "fhi"], ["xc"]),  # 0..0.7 at scale 0.1: 8 levels = 3 bits
        helper.make_node("Clip", ["w1_q", "lo4", "hi4"], ["w1c"]),
        helper.make_node("DequantizeLinear", ["w1c", "s", "zi"], ["w1"]),
        helper.make_node("Conv", ["xc", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8, name="/a/conv/Conv"),
        helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("QuantizeLinear", ["r1", "s", "zu"], ["r1q"]),
        helper.make_node("DequantizeLinear", ["r1q", "s", "zu"], ["r1d"]),
        helper.make_node("DequantizeLinear", ["w2_q", "s", "zi"], ["w2"]),
        helper.make_node("Conv", ["r1d", "w2"], ["c2"], kernel_shape=[3, 3], pads=[0, 0, 0, 0], group=8),
        helper.make_node("Pad", ["c2", "pads"], ["c2p"]),
        helper.make_node("Add", ["c2p", "xd"], ["sum"]),
        helper.make_node("GlobalAveragePool", ["sum"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"]),
    ]
    init.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_qdq_bits_shapes_and_fusion_are_read_from_a_hand_built_graph(tmp_path):
    path = tmp_path / "qdq.onnx"
    _qdq_graph(path)
    layers = workload_from_onnx(path)
    assert [(x.name, x.op) for x in layers] == [("a", "dwconv"), ("dwconv0", "dwconv"), ("add0", "add"),
                                                ("pool0", "pool"), ("linear0", "linear")]
    a, b, add, pool, fc = layers
    assert (a.w_bits, a.a_bits, a.out_bits) == (4, 3, 8)  # integer clip, float clip after DQ, uint8 Q
    assert (b.w_bits, b.a_bits) == (8, 8)  # plain int8/uint8 QDQ
    # a 3x3 conv without padding on 6x6: the reader shifts the input size so the output (4x4) is exact
    assert b.out_hw == (4, 4) and b.macs == 8 * 9 * 16
    assert (add.cin, add.h, add.a_bits) == (8, 6, 32) and (pool.h, pool.k) == (6, 6)
    assert (fc.cin, fc.cout, fc.w_bits, fc.a_bits) == (8, 10, 32, 32)


def test_unreadable_onnx_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    for path, expected in ((bad, "not an ONNX model"), (tmp_path / "missing.onnx", "file not found")):
        with pytest.raises(ProfileError) as exc:
            workload_from_onnx(path)
        assert expected in str(exc.value) and "\n" not in str(exc.value)


# ---- block profiles ---------------------------------------------------------------------------

def _random_networks(n: int, seed: int) -> list[NetworkRecord]:
    from flightco.measure import sample_genomes

    space = SearchSpace.load(Path(__file__).resolve().parents[1] / "search_spaces" / "mobilenet.yaml")
    return [NetworkRecord(f"n{i}", tuple(workload(g)), {}) for i, g in enumerate(sample_genomes(space, n, seed))]


def test_block_fit_recovers_a_known_per_kernel_cost_law():
    """Reference: networks whose 'measured' latency follows a known law of the same family; 30
    networks must recover it and predict 40 unseen networks within 2 %."""
    def law(layers):
        t = 0.05
        for x in layers:
            if x.op == "conv":
                t += 0.004 + 2e-3 * x.macs / 1e6 * 4 + 0.1 * (x.input_bytes + x.output_bytes + x.weight_bytes) / 1e6
            elif x.op == "dwconv":
                t += 0.006 + 8e-3 * x.macs / 1e6
            elif x.op == "linear":
                t += 0.003
            else:
                t += 0.002
        return t

    executed = BlockProfile.from_yaml(_BITS8, "bits").features.executed  # int8 runtime: 2-8 bits run at 8

    def measured(recs):
        return [NetworkRecord(r.name, r.layers, {"latency_ms": law(executed(r.layers))}) for r in recs]

    train, test = measured(_random_networks(30, 1)), measured(_random_networks(40, 2))
    prof = BlockProfile.from_yaml(fit_block_profile(train, "law", bootstrap=10), "fit")
    rel = [abs(prof.cost(list(r.layers)).latency_ms / r.values["latency_ms"] - 1) for r in test]
    assert max(rel) < 0.02
    value, std = prof.predict_metric(list(test[0].layers), "latency_ms")
    assert value > 0 and 0 <= std < 0.05 * value
    assert all(c >= 0 for c in prof.spec.models["latency_ms"].coef)


_BITS8 = {"name": "b", "kind": "block", "supported_bits": [8],
          "models": {"latency_ms": {"terms": ["overhead"] + [f"{g}.{t}" for g, ts in (
              ("conv", ("count", "mmacs_q", "mmacs_f", "mbytes_q", "mbytes_f")), ("dwconv", ("count", "mmacs_q", "mmacs_f", "mbytes_q")),
              ("linear", ("count", "mmacs")), ("eltwise", ("count", "mbytes"))) for t in ts],
              "coef": [0.0] * 14}}}


def test_block_fit_on_a_base_profile_learns_its_correction():
    base = yaml.safe_load(BITFUSION.read_text())
    base_prof = load_profile(BITFUSION)
    recs = [NetworkRecord(r.name, r.layers, {
        "latency_ms": 0.2 + 3.0 * base_prof.cost(list(r.layers)).latency_ms,
        "energy_mj": 2.0 * base_prof.cost(list(r.layers)).energy_mj,
        "memory_kb": 500 + 1.5 * base_prof.cost(list(r.layers)).memory_kb}) for r in _random_networks(25, 4)]
    prof = profile_from_data(fit_block_profile(recs[:20], "corr", base=base, bootstrap=5), "fit")
    for r in recs[20:]:
        c = prof.cost(list(r.layers))
        assert c.latency_ms == pytest.approx(r.values["latency_ms"], rel=0.01)
        assert c.memory_kb == pytest.approx(r.values["memory_kb"], rel=0.01)
        assert c.energy_mj == pytest.approx(r.values["energy_mj"], rel=0.01)
    assert prof.spec.models["latency_ms"].terms[0] == "overhead"


def test_block_profile_errors_name_the_field(tmp_path):
    bad = dict(_BITS8, models={"latency_ms": {"terms": ["overhead"], "coef": [-1.0]}})
    with pytest.raises(ProfileError, match="models.latency_ms.coef"):
        profile_from_data(bad, "p.yaml")
    with pytest.raises(ProfileError, match="terms must be"):
        profile_from_data(dict(_BITS8, models={"latency_ms": {"terms": ["overhead"], "coef": [1.0]}}), "p.yaml")


# ---- measuring, and the CLI -------------------------------------------------------------------

def _float_net(path: Path, channels: int, size: int) -> None:
    rng = np.random.default_rng(channels)
    w1 = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 1, 1])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_peak_memory_follows_the_weights(tmp_path):
    """A real onnxruntime measurement: 512 more 1x1 channels (1 MB more float weights) must show."""
    from flightco.measure import peak_memory_kb

    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    _float_net(small, 16, 8)
    _float_net(big, 512, 8)
    s, b = peak_memory_kb(small, runs=20), peak_memory_kb(big, runs=20)
    assert 0 < s < b and b - s > 900  # 512*512*4 B = 1024 KB of weights


@pytest.mark.slow
def test_measure_fit_eval_predict_networks_cli(tmp_path):
    """The commands end to end, in-process (Typer's runner: the same code a user runs, without five
    interpreter start-ups); measuring is real onnxruntime, memory in its own processes."""
    from typer.testing import CliRunner

    from flightco.cli import app

    def cli(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    files = []
    for i, (c, s) in enumerate(((8, 8), (16, 12), (32, 16), (64, 8), (24, 20))):
        files.append(tmp_path / f"f{i}.onnx")
        _float_net(files[-1], c, s)
    table = tmp_path / "nets.jsonl"
    r = cli("profile", "measure-networks", *files, "--out", table, "--repeats", "10")
    assert r.exit_code == 0, r.output
    recs = read_network_table(table)
    assert len(recs) == 5 and all({"latency_ms", "memory_kb"} <= set(x.values) for x in recs)
    # each record says how settled its timing was and what load it ran beside (busy spells rejected)
    assert all(x.notes["spread_pct"] >= 0 and x.notes["cores"] >= 1 and x.notes["background_cores"] >= 0 for x in recs)
    prof = tmp_path / "block.yaml"
    r = cli("profile", "fit-networks", table, "--out", prof, "--bootstrap", "5")
    assert r.exit_code == 0, r.output
    r = cli("profile", "eval", prof, table, "--json")
    report = json.loads(r.stdout)
    assert set(report) == {"latency_ms", "memory_kb"}
    assert set(report["latency_ms"]) == {"n", "mape", "rmspe", "acc10", "spearman"} and "NaN" not in r.stdout
    r = cli("profile", "predict", prof, files[0], "--json")
    (row,) = json.loads(r.stdout)
    assert row["latency_ms"] > 0 and row["memory_kb"] > 0 and row["latency_ms_std"] >= 0
    r = cli("profile", "predict", BITFUSION, table, "--json")
    assert len(json.loads(r.stdout)) == 5
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_line() + "\n" + _line(layers=[{**LAYER, "k": 0}]) + "\n")
    r = cli("profile", "fit-networks", bad, "--out", tmp_path / "x.yaml")
    assert r.exit_code == 2 and "line 2: field layers[0].k" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.yaml").exists()


def test_weight_bits_are_read_back_from_every_export_form(tmp_path):
    """The onnx-int and tensorrt forms store sub-8-bit weights as plain int8 (no Clip): their bits
    come from the integer values (per-channel max scaling puts +-(2**(b-1)-1) in every channel)."""
    import warnings

    import torch

    from flightco.export import write_format
    from flightco.hw.onnx_workload import workload_from_onnx
    from flightco.hw.workload import workload
    from flightco.measure import sample_genomes
    from flightco.nn.mobilenet import build_model
    from flightco.space import SearchSpace

    warnings.filterwarnings("ignore")
    from conftest import SPACE

    genome = sample_genomes(SearchSpace.load(SPACE), 1, seed=3)[0]
    model = build_model(genome, collect_stats_steps=2)
    x = torch.randn(16, 1, 28, 28)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    model.eval()
    want = [(lw.name, lw.w_bits) for lw in workload(genome)]
    assert len({b for _, b in want if b < 32}) > 2  # a mixed-precision genome
    for fmt in ("onnx-int", "tensorrt", "qcdq"):
        path = tmp_path / f"{fmt}.onnx"
        write_format(model, x[:1], path, fmt, x)
        assert [(lw.name, lw.w_bits) for lw in workload_from_onnx(path)] == want, fmt
