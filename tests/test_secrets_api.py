"""No database password reaches disk; the Python API's torch-free parts."""

from __future__ import annotations

import json

import flightco
from flightco.runs import RunInfo, read_run_info, strip_password, with_password, write_run_info
from flightco.space import BlockGene, Genome, Precision

from conftest import BITFUSION


def test_run_json_never_stores_a_password(tmp_path, monkeypatch):
    url = "postgresql://alice:s3cr%40t@db.example:5432/flightco"
    write_run_info(tmp_path, RunInfo("s", url, "f"))
    text = (tmp_path / "run.json").read_text()
    assert "s3cr" not in text and json.loads(text)["storage"] == "postgresql://alice@db.example:5432/flightco"
    assert read_run_info(tmp_path).storage == strip_password(url)
    monkeypatch.setenv("FLIGHTCO_STORAGE_PASSWORD", "p@ss")
    assert with_password(strip_password(url)) == "postgresql://alice:p%40ss@db.example:5432/flightco"
    assert with_password(url) == url  # a password given in the URL wins
    assert with_password("sqlite:///x.db") == "sqlite:///x.db"


def test_stored_recipe_has_no_password(write_recipe):
    from conftest import tiny_recipe
    from flightco.recipe import load_recipe

    path = write_recipe(tiny_recipe(storage="postgresql://bob:hunter2@host/db"))
    assert "hunter2" not in json.dumps(load_recipe(path).to_stored())


def test_price_mirrors_the_profile():
    from flightco.hw.profile import load_profile
    from flightco.hw.workload import workload

    p8 = Precision(8, 8)
    g = Genome(1, 28, 10, 16, 3, 2, p8, (BlockGene(16, 3, 3, 1, p8, p8, p8),), p8)
    costs = flightco.price(g.to_dict(), BITFUSION)
    assert costs == load_profile(BITFUSION).cost(workload(g)).as_dict() and costs["latency_ms"] > 0
    assert callable(flightco.export) and callable(flightco.pareto) and callable(flightco.optimize)
