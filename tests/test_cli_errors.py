"""Bad input: one line on stderr, exit status 2, no traceback, stored study untouched."""

from __future__ import annotations

import pytest
import yaml

from conftest import BITFUSION, tiny_recipe


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_recipe(cli, tmp_path):
    _assert_one_line_error(cli("optimize", tmp_path / "nope.yaml"), "nope.yaml", "file not found")


def test_unknown_field(cli, write_recipe):
    _assert_one_line_error(cli("optimize", write_recipe(tiny_recipe(colour="red"))), "colour: unknown field")


def test_bits_outside_allowed_set(cli, write_recipe, tmp_path):
    from conftest import SPACE

    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text().replace("w_bits: [2, 3, 4, 5, 6, 8]", "w_bits: [1, 4]"))
    _assert_one_line_error(cli("optimize", write_recipe(tiny_recipe(search_space=str(space)))),
                           "precision.w_bits", "2, 3, 4, 5, 6, 8")


def test_missing_dataset_folder(cli, write_recipe, tmp_path):
    recipe = tiny_recipe(dataset={"name": "cifar10", "root": str(tmp_path / "no-cifar")})
    _assert_one_line_error(cli("optimize", write_recipe(recipe), "--out", tmp_path / "o"), "dataset.root", "not found")


def test_malformed_profile(cli, write_recipe, tmp_path):
    data = yaml.safe_load(BITFUSION.read_text())
    data["array"]["rows"] = -4
    prof = tmp_path / "bad_profile.yaml"
    prof.write_text(yaml.safe_dump(data))
    _assert_one_line_error(cli("optimize", write_recipe(tiny_recipe(hardware=[str(prof)])), "--out", tmp_path / "o"),
                           "bad_profile.yaml", "array.rows")


def test_unwritable_output_folder(cli, write_recipe, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line_error(cli("optimize", write_recipe(tiny_recipe()), "--out", blocker / "run"), "not writable")


def test_pareto_on_missing_run(cli, tmp_path):
    _assert_one_line_error(cli("pareto", tmp_path / "norun"), "run folder not found")


@pytest.mark.parametrize("args", [["--trials", "0"], ["--timeout", "-3"]])
def test_bad_cli_numbers_are_rejected(cli, write_recipe, args):
    proc = cli("optimize", write_recipe(tiny_recipe()), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
