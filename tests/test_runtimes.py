"""More runtimes (OpenVINO, ExecuTorch/XNNPACK, TVM untuned and MetaSchedule-tuned): a trained
model's onnx-int export, built into each runtime's own artifact, agrees with PyTorch, and each
runtime's executed-precision rule matches what the runtime itself compiled. Runtimes whose
package is not installed are skipped with the reason (the pip extra to install)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from flightco.data import load_dataset
from flightco.errors import FlightcoError
from flightco.export import _brevitas_qcdq, export_onnx_int
from flightco.nn.deploy import fold_for_deploy, snap_biases
from flightco.nn.mobilenet import build_model
from flightco.onnx_passes import bias_scales
from flightco.runtime_export import deploy, run_batched
from flightco.runtimes import RUNTIMES, get_runtime
from flightco.space import BlockGene, Genome, Precision
from flightco.train import TrainConfig, predict, train_qat


def _genome(bits: Precision) -> Genome:
    """Stem, a residual block, a strided block (as tests/test_deploy.py): every kind of layer."""
    blocks = (BlockGene(16, 1, 3, 1, None, bits, bits), BlockGene(16, 3, 3, 1, bits, bits, bits),
              BlockGene(24, 3, 3, 2, bits, bits, bits))
    return Genome(1, 28, 10, 16, 3, 2, bits, blocks, bits)


def _exported(tmp_path_factory, bits: Precision, seed: int, limit_train: int = 512, epochs: int = 1):
    torch.manual_seed(seed)
    data = load_dataset("mnist5k", limit_train=limit_train)
    genome = _genome(bits)
    model = build_model(genome, collect_stats_steps=5)
    train_qat(model, data.train, TrainConfig(epochs=epochs, batch_size=64, seed=0))
    folded = fold_for_deploy(model.eval(), data.train.x[:256])
    path = tmp_path_factory.mktemp(f"w{bits.w_bits}") / "m.onnx"
    snap_biases(folded, bias_scales(_brevitas_qcdq(folded, data.test.x[:1], path)))
    export_onnx_int(folded, data.test.x[:1], path)
    x = data.test.x[:320]
    return path, genome, x.numpy(), predict(folded, x).numpy(), data.test.y[:320].numpy()


@pytest.fixture(scope="module")
def w8a8(tmp_path_factory):
    return _exported(tmp_path_factory, Precision(8, 8), 0)


@pytest.fixture(scope="module")
def w4a4(tmp_path_factory):
    # trained to ~87 % (10 s): at 1 epoch on 512 images this W4A4 net stays at chance (15 %) with
    # every logit within +-0.5, and top-1 agreement then measures ties rather than the runtime
    return _exported(tmp_path_factory, Precision(4, 4), 1, limit_train=4000, epochs=5)


def _need(name: str):
    module = importlib.import_module(RUNTIMES[name].module)
    ok, why = module.available()
    if not ok:
        pytest.skip(why)
    return module


@pytest.mark.parametrize("runtime, integer_convs", [("openvino", None), ("executorch", 9), ("tvm", 0)])
def test_w8a8_export_agrees_and_precision_rule_matches_what_compiled(w8a8, runtime, integer_convs):
    _need(runtime)
    path, genome, x, pt, y = w8a8
    if integer_convs is None:  # OpenVINO takes int8 8-bit weights (VNNI hosts; depthwise everywhere), not uint8 + 128 ones
        from flightco.hw.workload import workload
        from flightco.runtimes.onnxruntime import signed_8bit_weights

        integer_convs = 9 if signed_8bit_weights() else sum(lw.op == "dwconv" for lw in workload(genome))
    r = deploy(path, runtime, x, pt, y, genome, measure=False, batches=(32,), write=False)
    assert r.top1_agreement >= 0.995, r
    assert r.rule["agrees"], r.rule  # describe_precision == the precisions read from the runtime
    # measured: OpenVINO keeps 8-bit convs with uint8 weights (zero point 128) in f32, XNNPACK
    # takes every conv as qs8, TVM's Relax frontend computes every conv on float32 buffers
    assert r.executed["convolutions"] == 9 and r.executed["integer_convolutions"] == integer_convs


def test_openvino_runs_sub_8bit_convolutions_as_int8(w4a4):
    _need("openvino")
    path, genome, x, pt, y = w4a4
    r = deploy(path, "openvino", x, pt, y, genome, measure=False, batches=(32,), write=False)
    assert r.rule == {"expected": {"int8": 9}, "compiled": {"int8": 9}, "agrees": True}
    kernels = {n["kernel"] for n in r.executed["nodes"] if n["op"] == "Convolution"}
    assert all("i8" in k.lower() for k in kernels), kernels


def test_executorch_w4a4_agrees_with_pytorch_and_runs_every_conv_int8(w4a4):
    """Sub-8-bit quantizers: XNNPACK's quantize honours only the int8 range, so the translation
    also clamps in float before each Q (and lets that clamp do the ReLU, which XNNPACK fuses)."""
    _need("executorch")
    path, genome, x, pt, y = w4a4
    r = deploy(path, "executorch", x, pt, y, genome, measure=False, batches=(32,), write=False)
    assert r.top1_agreement >= 0.995 and r.max_abs_diff < 1e-4, (r.top1_agreement, r.max_abs_diff)
    assert r.executed["integer_convolutions"] == r.executed["convolutions"] == 9 and r.rule["agrees"], r.rule


def test_openvino_w4a4_agrees_with_pytorch(w4a4):
    _need("openvino")
    path, genome, x, pt, y = w4a4
    assert (pt.argmax(1) == y).mean() > 0.5  # a trained network, not ties between near-equal logits
    r = deploy(path, "openvino", x, pt, y, genome, measure=False, batches=(32,), write=False)
    assert r.top1_agreement >= 0.995 and r.max_abs_diff < 1e-4, (r.top1_agreement, r.max_abs_diff)
    assert r.executed["integer_convolutions"] == 9 and r.executed["inexact_fusions"] == []


def test_openvino_without_exactness_barriers_fuses_residual_quantizers_and_says_so(w4a4, tmp_path):
    """What the barriers prevent, measured: OpenVINO's own fusions drop the rounding of both
    residual blocks' projection quantizers; ``executed`` names them and the logits drift."""
    ov = _need("openvino")
    path, genome, x, pt, y = w4a4
    artifact = ov.compile(path, tmp_path / "fused.xml", 32, exact=False)
    fused = ov.executed(artifact)["inexact_fusions"]
    assert sorted(f["quantizer"].split("/")[2] for f in fused) == ["blocks.0", "blocks.1"], fused
    logits = run_batched(ov.load(artifact), x, 32)
    assert np.abs(logits - pt).max() > 1e-3  # not bit-exact (with barriers: < 1e-4, test above)


@pytest.mark.slow  # lowers two .pte files (about 30 s each on a quiet machine, 90 s under load)
def test_executorch_measures_in_a_fresh_process(w8a8, tmp_path):
    _need("executorch")
    path, genome, x, pt, y = w8a8
    r = deploy(path, "executorch", x[:64], pt[:64], y[:64], genome, measure=True, batches=(1, 32))
    m = r.measured
    assert m["batch1"]["median_ms"] > 0 and m["batch32"]["median_ms"] > m["batch1"]["quietest_block_ms"]
    assert m["file_bytes"] > 0 and m["peak_memory_kb"] >= 0
    assert path.with_name("m.onnx.executorch.md").read_text().count("measured batch") == 2


@pytest.mark.slow
def test_tvm_tuned_with_a_tiny_budget_agrees_and_caches_its_database(w8a8):
    _need("tvm")
    path, genome, x, pt, y = w8a8
    r = deploy(path, "tvm-tuned", x, pt, y, genome, measure=False, batches=(32,), trials=2, write=False)
    assert r.top1_agreement >= 0.995 and r.rule["agrees"]
    tuning = path.with_name("m.tvm-tuned.b32.so.tuning")
    assert (tuning / "flightco_budget.json").is_file() and (tuning / "database_workload.json").is_file()


def test_unknown_runtime_is_one_line_naming_the_choices():
    with pytest.raises(FlightcoError, match="--runtime must be one of onnxruntime, openvino, executorch, tvm, tvm-tuned"):
        get_runtime("tflite")


def test_export_cli_refuses_unknown_runtime_before_reading_the_run(cli, tmp_path):
    r = cli("export", tmp_path / "no-run", "--trial", "0", "--out", tmp_path / "m.onnx", "--runtime", "tflite")
    assert r.returncode == 2 and "--runtime must be one of" in r.stderr and "Traceback" not in r.stderr
    r = cli("export", tmp_path / "no-run", "--trial", "0", "--out", tmp_path / "m.onnx", "--runtime", "openvino",
            "--format", "qcdq")
    if importlib.util.find_spec("openvino") is not None:
        assert r.returncode == 2 and "reads --format onnx-int" in r.stderr


def test_exactness_barriers_are_the_quantizers_before_adds_and_the_pooling_outputs():
    """Graph rule only (no OpenVINO needed): the tensors kept as outputs are each QuantizeLinear
    whose dequantized value reaches an Add (through an integer Clip) and each pooling output;
    a quantizer feeding only a convolution is left to fuse."""
    from onnx import TensorProto, helper

    from flightco.runtimes.openvino import exactness_barriers

    s, z = "scale", "zero"
    nodes = [
        helper.make_node("QuantizeLinear", ["x", s, z], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", s, z], ["xd"]),
        helper.make_node("Conv", ["xd", "w"], ["c"]),
        helper.make_node("QuantizeLinear", ["c", s, z], ["cq"], name="q_proj"),
        helper.make_node("Clip", ["cq", "lo", "hi"], ["cc"]),
        helper.make_node("DequantizeLinear", ["cc", s, z], ["cd"]),
        helper.make_node("Add", ["cd", "xd"], ["sum"]),
        helper.make_node("GlobalAveragePool", ["sum"], ["pooled"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None)])
    # the input quantizer's DQ feeds both the conv and the Add (a residual skip): a barrier too
    assert exactness_barriers(graph) == ["xq", "cq", "pooled"]
    graph.node[6].op_type = "Mul"  # no residual sum: only the pooling output stays
    assert exactness_barriers(graph) == ["pooled"]
