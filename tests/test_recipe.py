import pytest

from flightco.errors import RecipeError
from flightco.recipe import load_recipe

from conftest import ROOT, tiny_recipe


def test_default_recipe_loads_and_resolves_paths():
    r = load_recipe(ROOT / "recipes" / "mobilenet_energy.yaml")
    assert r.search_space_path.is_file() and all(p.is_file() for p in r.hardware_paths)
    assert [o.metric for o in r.objectives] == ["accuracy", "energy_mj"]
    assert str(r.constraints[0]) == "latency_ms <= 0.1"
    assert r.constraints[0].violation(0.13) == pytest.approx(0.03)
    assert r.constraints[0].violation(0.05) < 0


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"bogus": 1}, "bogus: unknown field"),
        ({"objectives": [{"metric": "flops", "direction": "minimize"}]}, "unknown metric 'flops'"),
        ({"constraints": ["latency_ms =< 2"]}, "must look like 'latency_ms <= 2.0'"),
        ({"constraints": ["accuracy >= 0.9"]}, "accuracy is only known after training"),
        ({"search": {"sampler": "cmaes"}}, "search.sampler"),
        ({"training": {"reference_bits": 7}}, "training.reference_bits: must be one of"),
        ({"search_space": "nope.yaml"}, "search_space: file"),
        ({"hardware": ["missing.yaml"]}, "hardware: profile file"),
    ],
)
def test_bad_recipe_is_one_line_error_naming_field(write_recipe, change, expected):
    path = write_recipe(tiny_recipe(**change))
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert expected in msg and str(path) in msg and "\n" not in msg


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "none.yaml")


def test_fingerprint_ignores_budget_but_not_search_definition(write_recipe):
    a = load_recipe(write_recipe(tiny_recipe(), "a.yaml"))
    b = load_recipe(write_recipe(tiny_recipe(search={"trials": 50, "population_size": 2}), "b.yaml"))
    c = load_recipe(write_recipe(tiny_recipe(constraints=["memory_kb <= 100"]), "c.yaml"))
    assert a.search_fingerprint() == b.search_fingerprint() != c.search_fingerprint()
