"""Characterization: the cliff/plateau detector, space hints, the builder, tiny CLI runs."""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest
import yaml

from flightco.cost_shape import NoiseRule, detect, dominated_choices
from flightco.errors import SpaceError
from flightco.recipe import load_recipe
from flightco.space import SearchSpace
from flightco.space_hints import SpaceHints, apply_hints

from conftest import BITFUSION, SPACE, tiny_recipe

TINY_SPACE = {
    "name": "tiny",
    "stem": {"channels": [8]},
    "stages": [{"depth": [1], "channels": [8, 16], "expansion": [1], "kernel": [3], "stride": 2}],
    "precision": {"w_bits": [4, 8], "a_bits": [8], "first_last_bits": [8]},
}


def _sweep(costs, spread, dimension="stages[0].channels", values=(8, 12, 16, 20, 24, 28)):
    macs = np.array(values, float) ** 2
    return pd.DataFrame({"kind": "sweep", "base": "small", "dimension": dimension, "value": [str(v) for v in values],
                         "macs": macs, "bops": macs * 64, "bytes": macs, "latency_ms": costs, "spread": spread})


def test_detector_finds_a_planted_cliff_and_ignores_noise():
    rng = np.random.default_rng(0)
    smooth = np.array([8, 12, 16, 20, 24, 28], float) ** 2 / 100
    noisy = smooth * (1 + rng.uniform(-0.01, 0.01, len(smooth)))  # 1 % noise, measured spread 1 %
    assert detect(_sweep(noisy, 0.01)).empty
    cliff = noisy.copy()
    cliff[2] = cliff[3] * 1.5  # width 16 costs 1.5x what the larger width 20 costs
    ev = detect(_sweep(cliff, 0.01))
    cliffs = ev[ev["event"] == "cliff"]
    assert ("16", "20") in set(zip(cliffs["from"], cliffs["to"]))
    assert all(cliffs["from"] == "16")
    # the same 1.5x jump is ignored when the measured spread says the timings are that noisy
    assert detect(_sweep(cliff, 0.2)).query("event == 'cliff'").empty


def test_detector_finds_a_plateau_and_hint_removes_the_dominated_choice():
    values = (2, 3, 4, 8)
    lat = np.array([1.0, 2.0, 2.0, 4.0])  # 3 bits cost what 4 bits cost
    df = _sweep(lat, 0.0, dimension="precision.w_bits", values=values)
    df["bops"] = np.array(values, float) * 8 * 100
    ev = detect(df, rule=NoiseRule(floor=0.01))
    assert set(zip(ev["event"], ev["from"], ev["to"])) == {("plateau", "3", "4")}
    hints = dominated_choices(df, ("latency_ms",), NoiseRule(floor=0.01))
    assert [(h["field"], h["value"], h["dominated_by"]) for h in hints] == [("precision.w_bits", "3", "4")]


def test_hints_change_the_space_and_bad_hints_are_refused(tmp_path):
    space = SearchSpace.load(SPACE)
    hints = SpaceHints(space="mobilenet", target="t", remove=[
        {"field": "precision.w_bits", "value": 3}, {"field": "stages[1].channels", "value": 40},
        {"field": "precision.first_last_bits", "value": "float"}])
    hinted = apply_hints(space, hints)
    assert 3 not in hinted.precision.w_bits and 40 not in hinted.stages[1].channels
    assert 32 not in hinted.precision.first_last_bits and hinted.stages[0] == space.stages[0]
    bad = [({"field": "precision.w_bits", "value": 7}, "is not a choice"),
           ({"field": "stages[9].kernel", "value": 3}, "has 3 stages"),
           ({"field": "stem.kernel", "value": 3}, "not an option")]
    for hint, message in bad:
        path = tmp_path / "h.yaml"
        path.write_text(yaml.safe_dump({"space": "mobilenet", "target": "t", "remove": [hint]}))
        with pytest.raises(SpaceError, match=message) as err:
            apply_hints(space, SpaceHints.load(path), str(path))
        assert "\n" not in str(err.value)
    one = SearchSpace.model_validate(TINY_SPACE)
    with pytest.raises(SpaceError, match="without choices"):
        apply_hints(one, SpaceHints(space="tiny", target="t", remove=[{"field": "stem.channels", "value": 8}]))
    (tmp_path / "broken.yaml").write_text("space: [unclosed")
    with pytest.raises(SpaceError, match="invalid YAML"):
        SpaceHints.load(tmp_path / "broken.yaml")


def test_recipe_space_hints_are_part_of_the_fingerprint(write_recipe, tmp_path):
    from flightco.errors import RecipeError

    plain = load_recipe(write_recipe(tiny_recipe()))
    hints = tmp_path / "hints.yaml"
    hints.write_text(yaml.safe_dump({"space": "mobilenet", "target": "t",
                                     "remove": [{"field": "precision.w_bits", "value": 3}]}))
    hinted = load_recipe(write_recipe(tiny_recipe(space_hints=str(hints)), "hinted.yaml"))
    assert "space_hints (file contents)" in hinted.search_fingerprint_parts()
    assert "space_hints (file contents)" not in plain.search_fingerprint_parts()
    assert hinted.search_fingerprint() != plain.search_fingerprint()
    with pytest.raises(RecipeError, match="space_hints: file"):
        load_recipe(write_recipe(tiny_recipe(space_hints="no_such_hints.yaml"), "r3.yaml"))


@pytest.mark.slow
def test_characterize_profile_tiny_budget_writes_table_findings_hints_plots(cli, tmp_path):
    out = tmp_path / "char"
    r = cli("characterize", SPACE, "--profile", BITFUSION, "--out", out, "--random", "20", "--bases", "small,large",
            "--resolutions", "20,28", "--fine-step", "8")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out / "points.csv")
    assert {"macs", "bops", "bytes", "latency_ms", "energy_mj", "memory_kb", "dimension", "value"} <= set(table)
    assert (table["kind"] == "random").sum() == 20
    assert {"precision.w_bits", "stages[2].channels~fine", "resolution"} <= set(table["dimension"])
    findings = (out / "findings.md").read_text()
    assert "Kendall tau" in findings and "## Space hints" in findings
    hints = SpaceHints.load(out / "space_hints.yaml")
    removed = {(h.field, h.value) for h in hints.remove}
    assert ("precision.w_bits", 3) in removed  # BitFusion runs 3 bits as 4
    assert ("precision.w_bits", 4) not in removed
    assert (out / "plots" / "energy_mj_vs_work.png").stat().st_size > 1000
    again = cli("characterize", SPACE, "--profile", BITFUSION, "--out", out, "--random", "20", "--bases", "small,large",
                "--resolutions", "20,28", "--fine-step", "8", "--no-plots")
    assert again.returncode == 0 and len(pd.read_csv(out / "points.csv")) == len(table)  # resumed: nothing re-measured
    bad = cli("characterize", SPACE, "--profile", BITFUSION, "--runtime", "onnxruntime", "--out", out)
    assert bad.returncode == 2 and "exactly one of" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_characterize_onnxruntime_tiny_budget(cli, tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    out = tmp_path / "ort"
    r = cli("characterize", space, "--runtime", "onnxruntime", "--out", out, "--random", "2", "--bases", "small",
            "--resolutions", "16", "--fine-step", "0", "--threads", "1", "--formats", "onnx-int-built",
            "--repeats", "6", "--no-plots")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(out / "points.csv")
    assert (t["latency_ms"] > 0).all() and (t["spread"] >= 0).all()
    assert t.loc[t["kind"] == "sweep", "memory_kb"].notna().all()
    assert set(t.loc[t["dimension"] == "runtime.graph_opt", "value"]) == {"disabled", "basic", "extended", "all"}
    assert "runtime.graph_opt" in (out / "findings.md").read_text()


@pytest.mark.slow
def test_builder_graph_matches_flightco_export(tmp_path):
    """onnxruntime optimizes the directly built graph into the same kernels as flightco export's file."""
    import onnx

    from flightco.measure import _export_network, _session, sample_genomes
    from flightco.onnx_build import build_onnx

    genome = sample_genomes(SearchSpace.load(SPACE), 2, 0)[1]
    ops = []
    for kind in ("build", "export"):
        path, opt = tmp_path / f"{kind}.onnx", tmp_path / f"{kind}.opt.onnx"
        build_onnx(genome, path) if kind == "build" else _export_network(genome, path, "onnx-int")
        _session(path, 1, opt)
        ops.append(collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node))
    assert ops[0] == ops[1]


def test_hint_values_of_32_are_float_only_for_bit_widths():
    """32 channels is a width, not "float" (a bit-width of 32 is float); the written hints say so."""
    from flightco.space_hints import hints_yaml

    text = hints_yaml("mobilenet", "onnxruntime", [
        {"field": "stages[2].channels", "value": "32", "dominated_by": "48", "evidence": "e"},
        {"field": "precision.first_last_bits", "value": "8", "dominated_by": "float", "evidence": "e"}])
    remove = yaml.safe_load(text)["remove"]
    assert remove[0]["value"] == 32 and remove[1]["dominated_by"] == "float"
