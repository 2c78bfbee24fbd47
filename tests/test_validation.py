"""Validation records in profiles, `profile show`, JSON without NaN, profile provenance, the
learned profile that refines an analytic one, and timing-noise rejection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from flightco.hw.profile import load_profile
from flightco.hw.validation import json_safe, profile_provenance, record_validation, validation_entry

from conftest import BITFUSION, ROOT

HEADER = "op,cin,cout,h,w,k,stride,groups,w_bits,a_bits,latency_ms,energy_mj"


def _table(path, rows, scale=1e3, seed=0):
    """Rows priced by the BitFusion profile (scaled to other units), with 2% noise."""
    prof = load_profile(BITFUSION)
    rng = np.random.default_rng(seed)
    lines = [HEADER]
    for op, cin, cout, h, k, s, g, w, a in rows:
        from flightco.hw.workload import LayerWorkload

        c = prof.independent_layer_costs([LayerWorkload("r", op, cin, cout, h, h, k, s, g, w, a, a)])[0]
        n = rng.normal(0, 0.02, 2)
        lines.append(f"{op},{cin},{cout},{h},{h},{k},{s},{g},{w},{a},{c.latency_ms * scale * (1 + n[0]):.6g},"
                     f"{c.energy_mj * scale * (1 + n[1]):.6g}")
    path.write_text("\n".join(lines) + "\n")


ROWS = [("conv", 16, 32, 28, 1, 1, 1, 8, 8), ("conv", 32, 32, 14, 3, 1, 1, 4, 4), ("dwconv", 64, 64, 14, 3, 2, 64, 8, 8),
        ("conv", 64, 16, 7, 1, 1, 1, 4, 8), ("dwconv", 96, 96, 7, 5, 1, 96, 4, 4), ("linear", 64, 10, 1, 1, 1, 1, 8, 8)]


def test_eval_record_then_show(tmp_path, cli):
    prof = tmp_path / "bitfusion.yaml"
    shutil.copy(BITFUSION, prof)
    shipped = yaml.safe_load(prof.read_text()).get("validation") or []  # the profile's own records
    table = tmp_path / "t.csv"
    _table(table, ROWS)
    proc = cli("profile", "eval", prof, table, "--calibrate", "--json", "--record", "--against", "synthetic check")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == {"latency_ms", "energy_mj"}
    assert {"n", "mape", "rmspe", "acc10", "spearman"} <= set(report["latency_ms"])
    text = prof.read_text()
    assert "# BitFusion (Sharma" in text  # comments kept
    data = yaml.safe_load(text)
    assert data["validation"][: len(shipped)] == shipped  # earlier records are kept
    [rec] = data["validation"][len(shipped):]
    assert rec["against"] == "synthetic check" and rec["metrics"]["latency_ms"]["n"] == len(ROWS)
    assert rec["date"] and rec["tools"]["numpy"] and rec["calibrated"] is True
    # recording again against the same table replaces the record; the profile still loads
    assert cli("profile", "eval", prof, table, "--calibrate", "--record", "--against", "synthetic check").returncode == 0
    assert len(yaml.safe_load(prof.read_text())["validation"]) == len(shipped) + 1
    load_profile(prof)
    # recording does not change what priced a search
    assert profile_provenance(prof)["sha"] == profile_provenance(BITFUSION)["sha"]
    proc = cli("profile", "show", prof)
    assert proc.returncode == 0, proc.stderr
    assert "synthetic check" in proc.stdout and "assumptions" in proc.stdout and "16x32" in proc.stdout


def test_show_says_when_nothing_was_validated(tmp_path, cli):
    prof = tmp_path / "e.yaml"
    data = yaml.safe_load((ROOT / "hw_profiles" / "eyeriss.yaml").read_text())
    data.pop("validation", None)
    prof.write_text(yaml.safe_dump(data))
    proc = cli("profile", "show", prof)
    assert proc.returncode == 0 and "none recorded" in proc.stdout


def test_eval_json_never_prints_nan(tmp_path, cli):
    table = tmp_path / "one.csv"
    _table(table, ROWS[:1])  # one row: Spearman is undefined
    proc = cli("profile", "eval", BITFUSION, table, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "NaN" not in proc.stdout
    assert json.loads(proc.stdout)["latency_ms"]["spearman"] is None
    assert json_safe({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}


def test_record_validation_keeps_other_records(tmp_path):
    prof = tmp_path / "p.yaml"
    shutil.copy(BITFUSION, prof)
    r = {"latency_ms": {"n": 3, "mape": 1.0, "rmspe": 1.0, "acc10": 1.0, "spearman": float("nan")}}
    shipped = yaml.safe_load(prof.read_text()).get("validation") or []  # the profile's own records
    record_validation(prof, validation_entry("a", r))
    record_validation(prof, validation_entry("b", r))
    recs = yaml.safe_load(prof.read_text())["validation"][len(shipped):]
    assert [x["against"] for x in recs] == ["a", "b"] and recs[0]["metrics"]["latency_ms"]["spearman"] is None


def test_learned_profile_refines_the_analytic_one(tmp_path, cli):
    """Fitted on 12 rows with the BitFusion model as features, it predicts unseen shapes."""
    rng = np.random.default_rng(1)
    shapes = []
    for _ in range(36):
        op = rng.choice(["conv", "dwconv"])
        c = int(rng.choice([16, 24, 32, 48, 64, 96, 144]))
        h = int(rng.choice([7, 14, 28]))
        k = 1 if op == "conv" and rng.random() < 0.7 else int(rng.choice([3, 5]))
        cout = c if op == "dwconv" else int(rng.choice([16, 32, 64, 96]))
        b = int(rng.choice([4, 8]))
        shapes.append((op, c, cout, h, k, 1, c if op == "dwconv" else 1, b, b))
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _table(train, shapes[:12], seed=2)
    _table(test, shapes[12:], seed=3)
    out = tmp_path / "learned.yaml"
    proc = cli("profile", "fit", train, "--out", out, "--base", BITFUSION)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text())["supported_bits"] == [2, 4, 8, 16]  # taken from the base
    proc = cli("profile", "eval", out, test, "--json")
    r = json.loads(proc.stdout)["latency_ms"]
    assert r["acc10"] >= 0.8 and r["spearman"] > 0.95


def test_search_records_profile_versions(tmp_path):
    from flightco.hw.validation import describe_provenance

    p = profile_provenance(BITFUSION)
    assert p["name"] == "bitfusion-45nm" and p["version"] == "2" and len(p["sha"]) == 12
    assert "bitfusion-45nm v2" in describe_provenance([p])
    assert "not recorded" in describe_provenance(None)


def test_noisy_timings_are_measured_again(tmp_path):
    """A session slowed down in some blocks only: the quietest two blocks must agree."""
    from flightco.measure import time_session_stats

    class Flaky:
        def __init__(self):
            self.calls = 0

        def run(self, _out, _feeds):
            import time

            self.calls += 1
            # every other block of 4 runs is 3x slower (a busy neighbour); the rest take 1 ms
            time.sleep(0.003 if (self.calls // 4) % 2 else 0.001)

    sess = Flaky()
    ms, spread = time_session_stats(sess, {}, warmup=0, repeats=12, blocks=3, tolerance=0.5)
    assert 0.9 < ms < 2.0 and spread <= 0.5


def test_share_interval_is_wilsons_score_interval():
    from flightco.hw.accuracy import share_interval

    # 47 of 50 within ±10 %: the textbook Wilson 95 % interval is 83.8-97.9 %
    lo, hi = share_interval(0.94, 50)
    assert lo == pytest.approx(0.8378, abs=5e-4) and hi == pytest.approx(0.9794, abs=5e-4)
    lo, hi = share_interval(1.0, 10)  # all 10: still not "100 %"
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=5e-4)
    assert share_interval(0.5, 0) == (0.0, 1.0)
