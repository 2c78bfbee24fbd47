"""End-to-end runs of the real CLI on a tiny budget: real Optuna journal storage, real
training for a few steps on real digits, a real onnxruntime session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pandas as pd
import pytest
import torch

from flightco.runs import load_study

from conftest import BITFUSION, tiny_recipe

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One tiny search, shared by the tests below (it takes ~20 s)."""
    from conftest import run_cli
    import yaml

    folder = tmp_path_factory.mktemp("e2e")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    out = folder / "run"
    proc = run_cli("optimize", recipe, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return recipe, out, proc


def _completed(run_dir):
    _, study = load_study(run_dir)
    return study, [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_optimize_stores_study_with_genomes_and_metrics(finished_run):
    _, out, proc = finished_run
    study, trials = _completed(out)
    assert len(trials) == 3
    for t in trials:
        assert {"genome", "metrics", "bits", "status"} <= set(t.user_attrs)
        assert t.user_attrs["metrics"]["energy_mj"] == pytest.approx(t.values[1])
    trained = [t for t in trials if "proxy" in t.user_attrs]
    assert trained and all((out / "trials" / f"{t.number:04d}" / "proxy.pt").is_file() for t in trained)
    finals = [k for k in study.user_attrs if k.startswith("final:")]
    assert len(finals) == 1
    entry = study.user_attrs[finals[0]]
    assert 0 <= entry["final"]["test_accuracy"] <= 1 and entry["reference"]["bits"] == "uniform W8A8"
    assert "Pareto front" in proc.stdout


def test_pareto_table_csv_and_plot(finished_run, cli, tmp_path):
    _, out, _ = finished_run
    csv = tmp_path / "front.csv"
    png = tmp_path / "front.png"
    proc = cli("pareto", out, "--csv", csv, "--plot", png)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(csv)
    assert {"trial", "accuracy", "energy_mj", "latency_ms", "memory_kb", "bits"} <= set(df.columns)
    study, _ = _completed(out)
    assert sorted(df["trial"]) == sorted(t.number for t in study.best_trials if "proxy" in t.user_attrs)
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "uniform" in proc.stdout  # the finalist's 8-bit twin is shown
    all_csv = tmp_path / "all.csv"
    assert cli("pareto", out, "--all", "--csv", all_csv).returncode == 0
    assert len(pd.read_csv(all_csv)) == 3


def test_export_onnx_matches_pytorch_in_onnxruntime(finished_run, cli, tmp_path):
    _, out, _ = finished_run
    study, trials = _completed(out)
    finalist = int(next(k for k in study.user_attrs if k.startswith("final:")).split(":")[1])
    onnx_path = tmp_path / "model.onnx"
    proc = cli("export", out, "--trial", finalist, "--out", onnx_path, "--format", "qcdq", "--no-measure")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(onnx_path.with_name(onnx_path.name + ".json").read_text())
    assert report["weights"] == "final" and report["top1_agreement"] >= 0.995 and report["test_images"] == 1000
    assert onnx_path.with_name(onnx_path.name + ".md").is_file()

    # Independent check: our own onnxruntime session against the PyTorch model, batch size 7.
    from flightco.data import load_dataset
    from flightco.nn.mobilenet import build_model
    from flightco.space import Genome

    blob = torch.load(out / "trials" / f"{finalist:04d}" / "final.pt", weights_only=False)
    model = build_model(Genome.from_dict(blob["genome"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    x = load_dataset("mnist5k").test.x[:7]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (7, 10)
    np.testing.assert_allclose(got, want, atol=1e-4)
    ops = {n.op_type for n in __import__("onnx").load(str(onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_export_refuses_missing_and_untrained_trials(finished_run, cli, tmp_path):
    _, out, _ = finished_run
    before = [(t.number, t.values) for t in _completed(out)[1]]
    proc = cli("export", out, "--trial", 99, "--out", tmp_path / "x.onnx")
    assert proc.returncode == 2 and "trial 99 does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert [(t.number, t.values) for t in _completed(out)[1]] == before


def test_rerun_resumes_and_keeps_finished_trials(finished_run, cli):
    recipe, out, _ = finished_run
    before = {t.number: (t.params, t.values) for t in _completed(out)[1]}
    proc = cli("optimize", recipe, "--out", out, "--trials", 4)
    assert proc.returncode == 0, proc.stderr
    assert "3 finished trials found" in proc.stdout
    after = {t.number: (t.params, t.values) for t in _completed(out)[1]}
    assert len(after) == 4 and {k: after[k] for k in before} == before


def test_changed_recipe_is_refused_on_resume(finished_run, cli, write_recipe):
    _, out, _ = finished_run
    changed = write_recipe(tiny_recipe(constraints=["memory_kb <= 150"]), "changed.yaml")
    proc = cli("optimize", changed, "--out", out)
    assert proc.returncode == 2 and "search definition changed" in proc.stderr


def test_profile_breakdown_of_a_trial_sums_to_its_stored_costs(finished_run, cli):
    _, out, _ = finished_run
    study, trials = _completed(out)
    t = trials[0]
    proc = cli("profile", "breakdown", BITFUSION, "--run", out, "--trial", t.number, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["energy_mj"] == pytest.approx(t.user_attrs["metrics"]["energy_mj"])
    assert sum(layer["energy_mj"] for layer in data["layers"]) == pytest.approx(data["energy_mj"])
    assert {layer["bound"] for layer in data["layers"]} <= {"compute", "memory"}
    table = cli("profile", "breakdown", BITFUSION, "--run", out, "--trial", t.number)
    assert table.returncode == 0 and "executed" in table.stdout and "total: latency" in table.stdout
    missing = cli("profile", "breakdown", BITFUSION, "--run", out, "--trial", 999)
    assert missing.returncode == 2 and "trial 999" in missing.stderr and "Traceback" not in missing.stderr


def test_default_export_is_integer_measured_and_shown_by_pareto_and_the_api(finished_run, cli, tmp_path):
    """onnx-int (the default): integer kernels reported from onnxruntime, measured latency and
    memory, preprocessing in the metadata; `pareto --measured` and the Python API show it."""
    import flightco
    from flightco.export import preprocess, raw_pixels, read_preprocessing

    _, out, _ = finished_run
    study, trials = _completed(out)
    number = int(next(k for k in study.user_attrs if k.startswith("final:")).split(":")[1])
    path = tmp_path / "int.onnx"
    proc = cli("export", out, "--trial", number, "--out", path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(Path(f"{path}.json").read_text())
    assert report["format"] == "onnx-int" and report["top1_agreement"] >= 0.995
    # the report says how 8-bit weights are stored, chosen from this CPU's kernels (--w8-type auto)
    from flightco.runtimes.onnxruntime import int8_weights_exact

    assert report["w8_type"].startswith("int8 (" if int8_weights_exact() else "uint8 with zero point 128")
    assert f"- 8-bit weights stored as {report['w8_type']}" in Path(f"{path}.md").read_text()
    k = report["kernels"]
    assert k["convolutions"] > 0 and k["integer_convolutions"] + len([n for n in k["not_integer"] if n["op"] == "Conv"]) == k["convolutions"]
    assert all(n["reason"] for n in k["not_integer"])
    m = report["measured"]
    assert m["batch1"]["median_ms"] > 0 and m["batch32"]["median_ms"] > m["batch1"]["median_ms"] and m["peak_memory_kb"] > 0
    assert m["file_bytes"] == path.stat().st_size
    # the metadata's preprocessing turns raw pixels into exactly the training-normalised input
    from flightco.data import load_dataset

    pre = read_preprocessing(path)
    x = load_dataset("mnist5k", limit_train=tiny_recipe()["dataset"]["limit_train"]).test.x[:50].numpy()  # the run's split
    np.testing.assert_allclose(preprocess(raw_pixels(x, pre), pre), x, atol=1e-4)
    shown = cli("pareto", out, "--measured")
    assert shown.returncode == 0 and "measured_b1_ms" in shown.stdout, shown.stderr
    df = flightco.pareto(out, measured=True)
    assert isinstance(df, pd.DataFrame) and "measured_b1_ms" in df.columns
    costs = flightco.price(study.trials[number].user_attrs["genome"], ROOT / "hw_profiles" / "bitfusion.yaml")
    assert costs["latency_ms"] == pytest.approx(study.trials[number].user_attrs["metrics"]["latency_ms"])


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_html_pngs_summary_and_dashboard(finished_run, cli, tmp_path):
    """`flightco report`: PNGs decode, the summary lists the front, the HTML renders its plots in
    headless Chromium without console errors, and optuna-dashboard serves the study."""
    import subprocess

    from PIL import Image

    _, out, _ = finished_run
    folder = tmp_path / "report"
    proc = cli("report", out, "--out", folder)
    assert proc.returncode == 0, proc.stderr
    for name in ("front_2d.png", "hypervolume.png", "bits.png", "predicted_vs_measured.png"):
        with Image.open(folder / name) as im:
            assert im.size[0] > 300 and len(set(im.convert("L").getdata())) > 10  # drawn, not blank
    assert "| trial | accuracy |" in (folder / "summary.md").read_text()
    study, _ = _completed(out)
    assert study.metric_names == ["accuracy", "energy_mj"]
    from optuna_dashboard import wsgi
    from wsgiref.util import setup_testing_defaults

    env: dict = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(env)
    status: list = []
    body = b"".join(wsgi(study._storage)(env, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200") and study.study_name.encode() in body
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium) to render the HTML")
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'chrome'}", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=5000", "--dump-dom", (folder / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [c for c in console if "rror" in c or "Uncaught" in c], console
    assert run.stdout.count('class="main-svg"') >= 4, run.stderr[-2000:]  # plotly drew the figures


def test_export_to_tvm_tuned_tunes_with_the_trials_it_was_given(finished_run, cli, tmp_path):
    """`export --runtime tvm-tuned --trials N` hands N to MetaSchedule (a local of export_trial once
    shadowed it, and the CLI path failed with "bad operand type for unary -: 'dict'")."""
    import importlib.util

    if importlib.util.find_spec("tvm") is None:
        pytest.skip("TVM is an optional extra (pip install -e '.[tvm]')")
    _, out, _ = finished_run
    study, trials = _completed(out)
    finalist = int(next(k for k in study.user_attrs if k.startswith("final:")).split(":")[1])
    path = tmp_path / "m.onnx"
    proc = cli("export", out, "--trial", finalist, "--out", path, "--runtime", "tvm-tuned", "--trials", "2",
               "--no-measure", "--min-agreement", "0")
    assert proc.returncode == 0, proc.stderr
    for batch in (1, 32):
        budget = json.loads((tmp_path / f"m.tvm-tuned.b{batch}.so.tuning" / "flightco_budget.json").read_text())
        assert budget["trials"] == 2
    report = json.loads(path.with_name("m.onnx.tvm-tuned.json").read_text())
    assert report["options"]["trials"] == 2 and report["executed"]["tuned"]
