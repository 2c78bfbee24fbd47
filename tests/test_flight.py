"""FLightNN weights: projection properties, STE, per-filter term selection, pricing, exact export."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest
import torch

from flightco.errors import SpaceError
from flightco.hw.profile import load_profile
from flightco.hw.workload import LayerWorkload, workload
from flightco.nn import quant
from flightco.nn.flight import (
    bake_weights,
    flight_quantizers,
    flight_regularization,
    greedy_terms,
    grid_step,
    project,
    term_histograms,
)
from flightco.space import Genome, Precision, SearchSpace, parse_flight

from conftest import BITFUSION, ROOT, tiny_recipe


def representable(k: int, exponents: int = 7) -> torch.Tensor:
    """Every integer that is a sum of at most ``k`` signed terms 2**j, j in 0..exponents-1."""
    values = set()
    for js in itertools.combinations_with_replacement(range(-1, exponents), k):
        for signs in itertools.product((1, -1), repeat=k):
            values.add(sum(s * 2**j for s, j in zip(signs, js) if j >= 0))
    return torch.tensor(sorted(values), dtype=torch.float32)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_projection_is_exact_on_representable_values(k):
    ints = representable(k)
    ints = ints[ints.abs() <= 64]  # the grid: the largest term is the first power of two >= max|w|
    for scale in (2.0**-9, 2.0**-3, 1.0):
        w = torch.cat([ints, torch.tensor([64.0])]) * scale
        assert torch.equal(project(w, k), w)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_projection_never_uses_more_than_k_terms_and_is_idempotent(k):
    w = torch.randn(32, 16, 3, 3) * 0.1
    delta = grid_step(w)
    terms = torch.stack(greedy_terms(w / delta, k))
    assert int((terms != 0).sum(0).max()) <= k
    p = project(w, k)
    assert torch.equal(project(p, k), p)
    ints = p / grid_step(p)
    assert torch.equal(ints, ints.round()) and float(ints.abs().max()) <= 127
    # more terms approximate better
    if k > 1:
        assert (project(w, k) - w).norm() < (project(w, k - 1) - w).norm()


def test_straight_through_gradients_reach_weights_and_thresholds():
    conv = quant.conv2d(4, 8, 3, w_bits=8, w_terms=3, w_lambda=0.0)
    x = torch.randn(2, 4, 6, 6)
    upstream = torch.randn(2, 8, 6, 6)
    (conv(x) * upstream).sum().backward()
    (_, q), = flight_quantizers(torch.nn.Sequential(conv))
    # STE: the weight gradient is that of a float conv with the quantized weights
    wq = conv.quant_weight().value.detach().requires_grad_(True)
    (torch.nn.functional.conv2d(x, wq, padding=1) * upstream).sum().backward()
    assert torch.allclose(conv.weight.grad, wq.grad, atol=1e-5)
    assert q.thresholds.grad is not None and torch.isfinite(q.thresholds.grad).all()


def _train_terms(lam: float, steps: int = 60) -> float:
    """Fit a small FLightNN conv to a fixed random target; return its mean terms per filter."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(quant.conv2d(8, 16, 3, w_bits=8, w_terms=3, w_lambda=lam))
    target = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(16, 8, 8, 8)
    (_, q), = flight_quantizers(model)
    opt = torch.optim.Adam([{"params": [model[0].weight]}, {"params": [q.thresholds], "lr": 0.02}], lr=1e-3)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), target(x).detach()) + flight_regularization(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    counts = term_histograms(model)["0"]
    return sum((i + 1) * n for i, n in enumerate(counts)) / sum(counts)


def test_per_filter_terms_respond_to_the_regularizer():
    free, pressed, strong = _train_terms(0.0), _train_terms(1e-3), _train_terms(5.0)
    assert strong < pressed < free
    assert strong == pytest.approx(1.0)


def _split_filters(conv) -> None:
    """Set the term-2 threshold to the median residual, so half the filters keep 1 term."""
    w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
    rho = (w - project(conv.weight.detach(), 1).reshape(w.shape)).norm(dim=1) / w.norm(dim=1)
    (_, q), = flight_quantizers(torch.nn.Sequential(conv))
    with torch.no_grad():
        q.thresholds.fill_(float(rho.median()))


def test_bake_keeps_values_and_counts_exactly():
    conv = quant.conv2d(8, 16, 3, w_bits=8, w_terms=2, w_lambda=0.0)
    model = torch.nn.Sequential(conv)
    _split_filters(conv)
    before = conv.quant_weight().value.detach().clone()
    counts = term_histograms(model)
    assert all(n > 0 for n in counts["0"]), counts
    bake_weights(model)
    assert torch.equal(conv.weight.detach(), before)
    assert torch.equal(conv.quant_weight().value.detach(), before)
    assert term_histograms(model) == counts


def test_search_space_parses_flight_choices_and_rejects_bad_ones(tmp_path):
    assert parse_flight("flight(2, 1e-3)") == (2, 1e-3)
    assert parse_flight("flight(1)") == (1, 0.0)
    assert parse_flight("flight(9)") is None and parse_flight(4) is None
    space = SearchSpace.load(ROOT / "search_spaces" / "mobilenet_flightnn.yaml")
    assert "flight(2,0.02)" in space.precision.w_bits
    text = (ROOT / "search_spaces" / "mobilenet_flightnn.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace('"flight(2, 0.02)"', '"flight(7, 0.02)"'))
    with pytest.raises(SpaceError) as err:
        SearchSpace.load(bad)
    assert "w_bits" in str(err.value) and "flight(k_max, lambda)" in str(err.value) and "\n" not in str(err.value)


def _flight_genome(terms: int = 2, lam: float = 0.0) -> Genome:
    from flightco.measure import sample_genomes

    g = sample_genomes(SearchSpace.load(ROOT / "search_spaces" / "mobilenet.yaml"), 1, seed=3)[0].with_uniform_bits(8)
    p = Precision(8, 8, terms, lam)
    return replace(g, blocks=tuple(replace(b, expand=p if b.expand else None, dw=p, project=p) for b in g.blocks))


def test_genome_round_trips_and_workload_prices_realised_terms():
    g = _flight_genome(2, 0.5)
    assert Genome.from_json(g.to_json()) == g
    assert "FLightNN" in g.bits_summary()
    full = workload(g)
    flight = [lw for lw in full if lw.w_terms]
    assert flight and all(lw.w_terms == 2 for lw in flight)
    assert all(lw.weight_bits == 8 for lw in flight)  # 4 bits per term
    fewer = workload(g, {flight[0].name: 1.0})
    assert fewer[full.index(flight[0])].weight_bytes < flight[0].weight_bytes


def test_analytic_profiles_price_terms_as_shift_adds_or_int8():
    bitfusion = load_profile(BITFUSION)
    eyeriss = load_profile(ROOT / "hw_profiles" / "eyeriss.yaml")

    def layer(w_bits: int, terms: float) -> LayerWorkload:
        # a compute-bound layer (a 1x1 one is memory-bound on BitFusion: fewer terms save no time there)
        return LayerWorkload("l", "conv", 256, 256, 14, 14, 3, 1, 1, w_bits, 4, 4, terms)

    one, two, w8 = (bitfusion.cost([layer(8, 1)]), bitfusion.cost([layer(8, 2)]), bitfusion.cost([layer(8, 0)]))
    assert one.energy_mj < two.energy_mj and one.latency_ms < two.latency_ms < w8.latency_ms
    # a 1-term weight runs on the bricks of a 2-bit weight plus one shift per MAC, and is stored
    # in 4 bits (sign + exponent code)
    w2, w4 = bitfusion.cost([layer(2, 0)]), bitfusion.cost([layer(4, 0)])
    assert w2.latency_ms <= one.latency_ms <= w4.latency_ms
    assert one.energy_mj > w2.energy_mj
    assert one.memory_kb == pytest.approx(w4.memory_kb)
    # Eyeriss has no shift-add path: power-of-two weights are int8 integers there
    assert eyeriss.cost([layer(8, 1)]).energy_mj == pytest.approx(eyeriss.cost([layer(8, 0)]).energy_mj)
    assert "8-bit integers" in eyeriss.describe_precision()


def test_export_of_flight_layers_is_exact_in_onnxruntime(tmp_path):
    """1x1 FLightNN conv fed one-hot inputs: onnxruntime's output *is* the exported weights."""
    import onnxruntime as ort

    from flightco.export import export_onnx

    torch.manual_seed(1)
    model = torch.nn.Sequential(quant.conv2d(8, 16, 1, w_bits=8, w_terms=2))
    _split_filters(model[0])
    trained = model[0].quant_weight().value.detach().clone()
    x = torch.eye(8).reshape(8, 8, 1, 1)
    export_onnx(model, x[:1], tmp_path / "flight.onnx")
    sess = ort.InferenceSession(str(tmp_path / "flight.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]  # out[i, o] = W[o, i]
    assert np.array_equal(out[:, :, 0, 0].T, trained[:, :, 0, 0].numpy())


def test_flight_recipe_end_to_end_records_terms_and_exports(cli, write_recipe, tmp_path):
    recipe = tiny_recipe(search_space=str(ROOT / "search_spaces" / "mobilenet_flightnn.yaml"),
                         constraints=[], search={"trials": 2, "population_size": 2, "seed": 3})
    recipe["training"]["finalists"] = 0
    path = write_recipe(recipe)
    run = tmp_path / "run"
    r = cli("optimize", path, "--out", run)
    assert r.returncode == 0, r.stderr
    from flightco.runs import load_study

    _, study = load_study(run)
    trained = [t for t in study.trials if "proxy" in t.user_attrs]
    flight = [t for t in trained if t.user_attrs.get("flight_terms")]
    assert flight, [t.user_attrs.get("bits") for t in trained]
    t = flight[0]
    genome = Genome.from_dict(t.user_attrs["genome"])
    n_flight = sum(p.is_flight for p in genome.precisions())
    assert len(t.user_attrs["flight_terms"]) == n_flight
    out = tmp_path / "flight.onnx"
    r = cli("export", run, "--trial", t.number, "--out", out, "--format", "qcdq", "--no-measure")  # exact FLightNN weights
    assert r.returncode == 0, r.stderr
    report = json.loads(out.with_name(out.name + ".json").read_text())
    assert report["flight_terms"] == t.user_attrs["flight_terms"]
    assert report["top1_agreement"] == 1.0
    # the same trial through QONNX (FINN's input), executed by qonnx's reference executor
    qonnx_out = tmp_path / "flight.qonnx.onnx"
    r = cli("export", run, "--trial", t.number, "--out", qonnx_out, "--format", "qonnx")
    assert r.returncode == 0, r.stderr
    report = json.loads(qonnx_out.with_name(qonnx_out.name + ".json").read_text())
    assert report["format"] == "qonnx" and report["runtime"].startswith("qonnx")
    # exact up to rare one-step activation rounding flips (float32 vs qonnx's numpy arithmetic)
    assert report["test_images"] == 100 and report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 0.2
    import onnx

    quant = [n for n in onnx.load(str(qonnx_out)).graph.node if n.op_type == "Quant"]
    assert quant and all(n.domain.startswith("qonnx") for n in quant)
    bad = cli("export", run, "--trial", t.number, "--out", tmp_path / "x.onnx", "--format", "tflite")
    assert bad.returncode == 2 and "--format" in bad.stderr and "'qcdq', 'qonnx'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
