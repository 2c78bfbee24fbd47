"""Across-stack on a tiny real run: table columns, Kendall taus in [-1, 1], heatmaps, rank flips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flightco.across_stack import rank_flips, taus

from conftest import ROOT, tiny_recipe


def _table() -> pd.DataFrame:
    rows = []
    lat = {"a": [1.0, 2.0, 3.0, 4.0], "b": [4.0, 3.0, 2.0, 1.0]}  # target b reverses target a's ranking
    for target, values in lat.items():
        for trial, v in enumerate(values):
            rows.append({"trial": trial, "precision": "searched", "target": target, "latency_ms": v,
                         "accuracy": 0.5 + trial / 10, "macs": 100 + trial, "weight_kb": 10 + trial})
    return pd.DataFrame(rows)


def test_taus_and_rank_flips_on_a_reversed_ranking():
    per, pair = taus(_table())
    assert pair.loc["a | searched", "b | searched"] == pytest.approx(-1.0)
    assert per.set_index("target").loc["a", "tau_macs_latency_ms"] == pytest.approx(1.0)
    flips = rank_flips(_table())
    assert set(flips["trial"]) == {0, 3} and flips["shift"].max() == 3  # 1 and 2 move by one place only


@pytest.mark.slow
def test_across_stack_on_a_tiny_run(cli, write_recipe, tmp_path):
    run = tmp_path / "run"
    recipe = write_recipe(tiny_recipe(search={"trials": 3, "population_size": 2, "seed": 0},
                                      training={"proxy": {"epochs": 0.25, "batch_size": 64}, "finalists": 0}))
    r = cli("optimize", recipe, "--out", run, "--finalists", "0")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "stack"
    r = cli("across-stack", run, "--out", out, "--others", "2", "--threads", "1", "--formats", "onnx-int-built",
            "--profile", ROOT / "hw_profiles" / "eyeriss.yaml", "--images", "50", "--repeats", "5")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(out / "across_stack.csv")
    assert {"trial", "on_front", "precision", "target", "accuracy", "macs", "params", "weight_kb",
            "latency_ms", "energy_mj", "memory_kb"} <= set(t.columns)
    assert set(t["precision"]) == {"searched", "W8A8", "float"}
    assert {"bitfusion-45nm", "eyeriss-like", "onnxruntime/onnx-int-built/t1"} <= set(t["target"])
    assert t["accuracy"].between(0, 1).all() and (t["latency_ms"] > 0).all()
    pair = pd.read_csv(out / "tau_pairs.csv", index_col=0).to_numpy(float)
    per = pd.read_csv(out / "taus.csv")
    values = np.concatenate([pair[np.isfinite(pair)], per.filter(like="tau_").to_numpy(float).ravel()])
    values = values[np.isfinite(values)]
    assert len(values) and ((values >= -1) & (values <= 1)).all()
    assert (out / "tau_heatmap.png").stat().st_size > 1000 and (out / "rank_flips.csv").is_file()
    bad = cli("across-stack", tmp_path / "nope", "--out", out)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    for runtime, says in (("nope", "unknown runtime 'nope'"), ("onnxruntime", "always measured")):
        bad = cli("across-stack", run, "--out", tmp_path / "stack2", "--runtime", runtime)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and says in bad.stderr, bad.stderr


@pytest.mark.slow
def test_across_stack_with_another_runtime(cli, write_recipe, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is an optional extra (pip install -e '.[openvino]')")
    run = tmp_path / "run"
    recipe = write_recipe(tiny_recipe(search={"trials": 2, "population_size": 2, "seed": 0},
                                      training={"proxy": {"epochs": 0.25, "batch_size": 64}, "finalists": 0}))
    assert cli("optimize", recipe, "--out", run, "--finalists", "0").returncode == 0
    out = tmp_path / "stack"
    r = cli("across-stack", run, "--out", out, "--others", "1", "--threads", "1", "--formats", "onnx-int-built",
            "--runtime", "openvino", "--images", "50", "--repeats", "5")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(out / "across_stack.csv")
    ov = t[t["target"] == "openvino/t1"]
    assert len(ov) == len(t[t["target"] == "onnxruntime/onnx-int-built/t1"]) > 0
    assert (ov["latency_ms"] > 0).all() and set(ov["precision"]) == {"searched", "W8A8", "float"}
