"""The bad-input catalogue: every case a user (or an adversarial tester) met, kept as a regression test.

Each case asserts the exit status, that stderr is ONE line naming the field or file, that no
traceback escaped, and — where the command must not write — that the run folder (study journal
included) is byte-identical afterwards. Most cases run in-process through typer's CliRunner on
the real ``flightco.cli.app`` (the CLI's 5 s start-up would make 90 subprocesses cost minutes);
a few run the real entry point in a subprocess. One tiny real run folder (real Optuna journal,
real training on a few batches of real digits) is built per module and copied per case.
"""

from __future__ import annotations

import fcntl
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from flightco.cli import app

from conftest import BITFUSION, SPACE, run_cli, tiny_recipe

runner = CliRunner()


# ---- helpers ------------------------------------------------------------------------------------


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def one_line_error(result, *needles: str, code: int = 2) -> str:
    """Exit ``code``, exactly one non-empty stderr line containing every needle, no traceback."""
    stderr = result.stderr
    rc = result.returncode if hasattr(result, "returncode") else result.exit_code
    exc = getattr(result, "exception", None)
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {exc!r}"
    assert rc == code, (rc, stderr, getattr(result, "stdout", ""))
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def recipe_file(tmp_path: Path, filename: str = "recipe.yaml", **overrides) -> Path:
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(tiny_recipe(**overrides)))
    return path


def base_recipe(**overrides) -> dict:
    r = tiny_recipe(**overrides)
    r["dataset"] = {"name": "synthetic", "options": {"num_samples": 240, "resolution": 16}}
    r["training"] = dict(r["training"], finalists=0)
    r["search"] = dict(r["search"], trials=2)
    r.pop("constraints")
    for k, v in overrides.items():
        r[k] = v
    return r


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One real tiny run (2 trained trials, no finalists): its recipe and folder."""
    folder = tmp_path_factory.mktemp("base")
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(base_recipe()))
    out = folder / "run"
    result = invoke("optimize", recipe, "--out", out)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return recipe, out


@pytest.fixture
def run(base_run, tmp_path):
    """A private copy of the base run folder, and its snapshot to compare with afterwards."""
    recipe, src = base_run
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst, snapshot(dst)


def assert_unchanged(folder: Path, before: dict[str, bytes]) -> None:
    after = snapshot(folder)
    assert after.keys() == before.keys(), set(after) ^ set(before)
    assert all(after[k] == before[k] for k in before), [k for k in before if after[k] != before[k]]


def no_run_written(out: Path) -> None:
    assert not (out / "run.json").exists() and not (out / "study.journal").exists()


# ---- recipes ------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


RECIPE_CASES = {
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "not a text file"),
    "invalid yaml": ("name: [unclosed\n", "invalid YAML"),
    "top-level list": ("- a\n- b\n", "expected a mapping"),
    "empty file": ("", "expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_unreadable_recipe(tmp_path, case):
    data, needle = RECIPE_CASES[case]
    path = _write(tmp_path, "recipe.yaml", data)
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "recipe.yaml", needle)
    no_run_written(tmp_path / "o")


def test_missing_recipe(tmp_path):
    one_line_error(invoke("optimize", tmp_path / "nope.yaml"), "nope.yaml", "file not found")


def test_recipe_is_a_folder(tmp_path):
    one_line_error(invoke("optimize", tmp_path), "is a folder")


FIELD_CASES = {
    "unknown field": ({"colour": "red"}, "colour: unknown field"),
    "bad name": ({"name": "my run/1"}, "name"),
    "no objectives": ({"objectives": []}, "objectives"),
    "unknown metric": ({"objectives": [{"metric": "speed", "direction": "maximize"}]}, "unknown metric 'speed'"),
    "duplicate objective": ({"objectives": [{"metric": "accuracy", "direction": "maximize"}] * 2}, "each metric may appear once"),
    "bad direction": ({"objectives": [{"metric": "accuracy", "direction": "up"}]}, "objectives.0.direction"),
    "malformed constraint": ({"constraints": ["memory_kb about 3"]}, "must look like"),
    "accuracy constraint": ({"constraints": ["accuracy >= 0.9"]}, "accuracy is only known after training"),
    "zero trials": ({"search": {"trials": 0}}, "search.trials"),
    "no budget": ({"search": {"trials": None}}, "set trials, timeout_s or both"),
    "unknown sampler": ({"search": {"trials": 2, "sampler": "grid"}}, "search.sampler"),
    "reference bits 7": ({"training": {"reference_bits": 7}}, "training.reference_bits"),
    "zero threads": ({"threads": 0}, "threads"),
    "test fraction > 1": ({"dataset": {"name": "mnist5k", "test_fraction": 1.5}}, "dataset.test_fraction"),
    "negative lr": ({"training": {"proxy": {"epochs": 1, "lr": -1}}}, "training.proxy.lr"),
    "empty hardware": ({"hardware": []}, "hardware"),
    "supernet gate without fine-tuning": (
        {"search": {"trials": 2, "strategy": "supernet", "supernet": {"finetune_steps": 0}, "early_stopping": {"eta": 3}}},
        "needs supernet.finetune_steps > 0"),
    "predictor fitted on too few subnets": (
        {"search": {"trials": 2, "strategy": "supernet", "supernet": {"predictor": {"min_records": 2}}}},
        "search.supernet.predictor.min_records"),
    "score scale from two points": (
        {"search": {"trials": 2, "strategy": "supernet", "supernet": {"score_scale": {"members": 2}}}},
        "search.supernet.score_scale.members"),
    "unknown predictor setting": (
        {"search": {"trials": 2, "strategy": "supernet", "supernet": {"predictor": {"model": "mlp"}}}},
        "search.supernet.predictor.model"),
}


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_invalid_recipe_field(tmp_path, case):
    overrides, needle = FIELD_CASES[case]
    path = recipe_file(tmp_path, **overrides)
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "recipe.yaml", needle)
    no_run_written(tmp_path / "o")


def test_missing_search_space_file(tmp_path):
    path = recipe_file(tmp_path, search_space=str(tmp_path / "no_space.yaml"))
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "search_space", "no_space.yaml", "not found")


def test_missing_profile_file(tmp_path):
    path = recipe_file(tmp_path, hardware=[str(tmp_path / "no_hw.yaml")])
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "hardware", "no_hw.yaml", "not found")


def test_unreachable_constraint_is_refused_before_any_trial(tmp_path):
    path = recipe_file(tmp_path, constraints=["memory_kb <= 0.5"])
    line = one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "constraints", "memory_kb <= 0.5", "closest")
    assert "relax" in line
    no_run_written(tmp_path / "o")


def test_storage_url_scheme_is_checked(tmp_path):
    path = recipe_file(tmp_path, storage="redis://localhost/0")
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "storage", "sqlite:///FILE")


# ---- search spaces ------------------------------------------------------------------------------


SPACE_CASES = {
    "1-bit weights": (("w_bits: [2, 3, 4, 5, 6, 8]", "w_bits: [1, 4]"), "precision.w_bits"),
    "infinite FLightNN lambda": (("w_bits: [2, 3, 4, 5, 6, 8]", "w_bits: ['flight(2, 1e999)']"), "finite lambda"),
    "too many FLightNN terms": (("w_bits: [2, 3, 4, 5, 6, 8]", "w_bits: ['flight(9, 0)']"), "k_max in 1..4"),
    "float activations inside": (("a_bits: [2, 3, 4, 5, 6, 8]", "a_bits: [4, float]"), "first_last_bits"),
    "no bit choices": (("a_bits: [2, 3, 4, 5, 6, 8]", "a_bits: []"), "a_bits needs at least one choice"),
    "unknown key": (("precision:", "colour: red\nprecision:"), "colour: unknown field"),
}


@pytest.mark.parametrize("case", sorted(SPACE_CASES))
def test_invalid_search_space(tmp_path, case):
    (old, new), needle = SPACE_CASES[case]
    text = SPACE.read_text()
    assert old in text, f"fixture drift: {old!r} not in {SPACE}"
    space = _write(tmp_path, "space.yaml", text.replace(old, new, 1))
    path = recipe_file(tmp_path, search_space=str(space))
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), "space.yaml", needle)
    no_run_written(tmp_path / "o")


def test_even_kernel_in_space(tmp_path):
    data = yaml.safe_load(SPACE.read_text())
    data["stages"][0]["kernel"] = [4]
    space = _write(tmp_path, "space.yaml", yaml.safe_dump(data))
    one_line_error(invoke("optimize", recipe_file(tmp_path, search_space=str(space)), "--out", tmp_path / "o"),
                   "space.yaml", "stages.0.kernel", "odd")


def test_binary_space_file(tmp_path):
    space = _write(tmp_path, "space.yaml", b"\xff\xfe\x00garbage")
    one_line_error(invoke("optimize", recipe_file(tmp_path, search_space=str(space)), "--out", tmp_path / "o"),
                   "space.yaml", "not a text file")


# ---- hardware profiles --------------------------------------------------------------------------


def _profile(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(BITFUSION.read_text())
    mutate(data)
    return _write(tmp_path, "bad_profile.yaml", yaml.safe_dump(data))


def test_malformed_profile_field(tmp_path):
    prof = _profile(tmp_path, lambda d: d["array"].__setitem__("rows", -4))
    one_line_error(invoke("optimize", recipe_file(tmp_path, hardware=[str(prof)]), "--out", tmp_path / "o"),
                   "bad_profile.yaml", "array.rows")


def test_unknown_profile_kind(tmp_path):
    prof = _profile(tmp_path, lambda d: d.__setitem__("kind", "quantum"))
    one_line_error(invoke("optimize", recipe_file(tmp_path, hardware=[str(prof)]), "--out", tmp_path / "o"),
                   "bad_profile.yaml", "kind must be one of")


def test_binary_profile(tmp_path):
    prof = _write(tmp_path, "bad_profile.yaml", b"\x00\x01\xff")
    one_line_error(invoke("profile", "eval", prof, _table(tmp_path)), "bad_profile.yaml", "not a text file")


def _table(tmp_path: Path, rows: list[str] | None = None, name: str = "meas.csv") -> Path:
    header = "op,cin,cout,h,w,k,stride,groups,w_bits,a_bits,latency_ms,energy_mj"
    rows = rows or ["conv,8,16,8,8,3,1,1,8,8,0.1,0.01", "conv,16,16,8,8,3,1,1,8,8,0.2,0.02",
                    "dwconv,16,16,8,8,3,1,16,8,8,0.05,0.004", "linear,16,10,1,1,1,1,1,8,8,0.01,0.001"]
    return _write(tmp_path, name, "\n".join([header, *rows]) + "\n")


def test_profile_eval_unsupported_activation_bits(tmp_path):
    table = _table(tmp_path, ["conv,8,16,8,8,3,1,1,8,40,0.1,0.01"])
    one_line_error(invoke("profile", "eval", BITFUSION, table), "meas.csv", "row 1, column a_bits", "1 to 32")


def test_profile_eval_json_is_valid_json_even_when_undefined(tmp_path):
    table = _table(tmp_path, ["conv,8,16,8,8,3,1,1,8,8,0.1,0.01"])  # one row: Spearman undefined
    result = invoke("profile", "eval", BITFUSION, table, "--json")
    assert result.exit_code == 0, result.stderr

    def refuse(name):
        raise AssertionError(f"invalid JSON constant {name}")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["latency_ms"]["spearman"] is None and report["latency_ms"]["n"] == 1


def test_profile_fit_invalid_bits_does_not_touch_existing_profile(tmp_path):
    existing = _write(tmp_path, "existing.yaml", BITFUSION.read_text())
    before = existing.read_bytes()
    one_line_error(invoke("profile", "fit", _table(tmp_path), "--out", existing, "--supported-bits", "0,8"),
                   "existing.yaml", "supported_bits")
    assert existing.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.yaml", "meas.csv"]  # no temp file left


@pytest.mark.parametrize("bits,needle", [("a,8", "--supported-bits must be integers")])
def test_profile_fit_unparsable_bits(tmp_path, bits, needle):
    one_line_error(invoke("profile", "fit", _table(tmp_path), "--out", tmp_path / "p.yaml", "--supported-bits", bits), needle)
    assert not (tmp_path / "p.yaml").exists()


def test_profile_fit_unknown_kind(tmp_path):
    one_line_error(invoke("profile", "fit", _table(tmp_path), "--out", tmp_path / "p.yaml", "--kind", "guessed"),
                   "--kind must be learned or measured")


def test_profile_fit_out_is_a_folder(tmp_path):
    (tmp_path / "folder").mkdir()
    one_line_error(invoke("profile", "fit", _table(tmp_path), "--out", tmp_path / "folder", "--kind", "measured"),
                   "--out", "is a folder")


def test_profile_fit_out_below_a_file(tmp_path):
    _write(tmp_path, "afile", "x")
    one_line_error(invoke("profile", "fit", _table(tmp_path), "--out", tmp_path / "afile" / "p.yaml", "--kind", "measured"),
                   "--out", "is a file, not a folder")


def test_profile_fit_out_into_run_folder_is_refused(run, tmp_path):
    folder, before = run
    one_line_error(invoke("profile", "fit", _table(tmp_path), "--out", folder / "run.json", "--kind", "measured"),
                   "--out", "would overwrite run folder", "run.json")
    assert_unchanged(folder, before)


def test_profile_fit_missing_table(tmp_path):
    one_line_error(invoke("profile", "fit", tmp_path / "none.csv", "--out", tmp_path / "p.yaml"), "none.csv", "file not found")


def test_profile_fit_bad_table_value(tmp_path):
    table = _table(tmp_path, ["conv,8,sixteen,8,8,3,1,1,8,8,0.1,0.01"])
    one_line_error(invoke("profile", "fit", table, "--out", tmp_path / "p.yaml"), "row 1, column cout", "integer")


def test_profile_fit_writes_a_valid_profile(tmp_path):
    from flightco.hw.profile import load_profile

    out = tmp_path / "sub" / "fitted.yaml"
    result = invoke("profile", "fit", _table(tmp_path), "--out", out, "--kind", "measured")
    assert result.exit_code == 0, result.stderr
    assert load_profile(out).name == "fitted"
    assert [p.name for p in out.parent.iterdir()] == ["fitted.yaml"]


@pytest.mark.parametrize("threads", ["0", "-1", "1,0"])
def test_profile_measure_threads_must_be_positive(tmp_path, threads):
    one_line_error(invoke("profile", "measure", "--out", tmp_path / "m.csv", "--threads", threads, "--layers", 1),
                   "--threads must be positive")
    assert not (tmp_path / "m.csv").exists()


# ---- datasets -----------------------------------------------------------------------------------


def _cifar_folder(tmp_path: Path, batch: object) -> Path:
    root = tmp_path / "cifar"
    root.mkdir()
    for name in ("data_batch_1", "test_batch"):
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)
    return root


def _dataset_case(tmp_path: Path, dataset: dict, *needles: str) -> None:
    path = recipe_file(tmp_path, dataset=dataset)
    one_line_error(invoke("optimize", path, "--out", tmp_path / "o"), *needles)
    no_run_written(tmp_path / "o")


def test_cifar_batch_that_is_a_pickled_list(tmp_path):
    root = _cifar_folder(tmp_path, [1, 2, 3])
    _dataset_case(tmp_path, {"name": "cifar10", "root": str(root)}, "data_batch_1", "not a CIFAR-10 python batch")


def test_cifar_batch_that_is_not_a_pickle(tmp_path):
    root = tmp_path / "cifar"
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"not a pickle at all")
    (root / "test_batch").write_bytes(b"neither")
    _dataset_case(tmp_path, {"name": "cifar10", "root": str(root)}, "data_batch_1", "not a CIFAR-10 python batch")


def test_cifar_labels_do_not_match_images(tmp_path):
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}
    root = _cifar_folder(tmp_path, batch)
    _dataset_case(tmp_path, {"name": "cifar10", "root": str(root)}, "4 images but 2 labels")


def test_cifar_folder_missing(tmp_path):
    _dataset_case(tmp_path, {"name": "cifar10", "root": str(tmp_path / "none")}, "dataset.root", "not found")


def _image_folder(tmp_path: Path, per_class: int, classes: int = 2) -> Path:
    from PIL import Image

    root = tmp_path / "images"
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


def test_image_folder_too_small_for_a_test_split(tmp_path):
    root = _image_folder(tmp_path, per_class=1)
    _dataset_case(tmp_path, {"name": "image_folder", "root": str(root)}, "split", "is empty")


def test_image_folder_with_one_class(tmp_path):
    root = _image_folder(tmp_path, per_class=3, classes=1)
    _dataset_case(tmp_path, {"name": "image_folder", "root": str(root)}, "dataset.root", "at least two class")


def test_unknown_dataset(tmp_path):
    _dataset_case(tmp_path, {"name": "imagenet"}, "dataset.name must be one of", "imagenet")


def test_dataset_option_that_does_not_apply(tmp_path):
    _dataset_case(tmp_path, {"name": "mnist5k", "options": {"resolution": 8}}, "dataset.options", "'resolution'",
                  "does not apply")


def test_dataset_root_that_does_not_apply(tmp_path):
    _dataset_case(tmp_path, {"name": "synthetic", "root": str(tmp_path)}, "dataset.root does not apply", "synthetic")


def test_dataset_option_of_the_wrong_type(tmp_path):
    _dataset_case(tmp_path, {"name": "synthetic", "options": {"num_samples": "many"}},
                  "dataset.options.num_samples must be a int")


# ---- run folders and storage --------------------------------------------------------------------


def test_pareto_on_missing_run(tmp_path):
    one_line_error(invoke("pareto", tmp_path / "norun"), "run folder not found")


def test_pareto_on_a_folder_that_is_not_a_run(tmp_path):
    one_line_error(invoke("pareto", tmp_path), "not a flightco run folder")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"study_name": 3, "storage": "journal", "fingerprint": "x"}'])
def test_damaged_run_file(run, content):
    folder, _ = run
    (folder / "run.json").write_bytes(content)
    before = snapshot(folder)
    one_line_error(invoke("pareto", folder), "run.json", "unreadable")
    assert_unchanged(folder, before)


def _tear(folder: Path, cut: int = 37) -> bytes:
    journal = folder / "study.journal"
    data = journal.read_bytes()
    journal.write_bytes(data[:-cut])
    return data


@pytest.mark.parametrize("command", [["pareto"], ["show", "--trial", "0"], ["export", "--trial", "0", "--out", "OUT"]])
def test_read_only_commands_refuse_a_torn_journal_and_change_nothing(run, tmp_path, command):
    folder, _ = run
    _tear(folder)
    before = snapshot(folder)
    args = [a if a != "OUT" else str(tmp_path / "m.onnx") for a in command]
    one_line_error(invoke(args[0], folder, *args[1:]), "study.journal", "torn", f"flightco repair {folder}")
    assert_unchanged(folder, before)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("garbage", [b"garbage\n", b"\x00\x00\x00", b'{"op_code": 4, "trunc'])
def test_read_only_commands_refuse_appended_garbage(run, garbage):
    folder, _ = run
    with open(folder / "study.journal", "ab") as fh:
        fh.write(garbage)
    before = snapshot(folder)
    one_line_error(invoke("pareto", folder), "study.journal", "torn or garbage tail")
    assert_unchanged(folder, before)


def test_repair_cuts_a_torn_tail_and_keeps_the_removed_bytes(run):
    folder, before = run
    whole = _tear(folder, cut=0)
    torn = whole[:-37]
    (folder / "study.journal").write_bytes(torn)
    result = invoke("repair", folder)
    assert result.exit_code == 0, result.stderr
    assert "repaired" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    repaired = (folder / "study.journal").read_bytes()
    backups = list(folder.glob("study.journal.torn-*"))
    assert len(backups) == 1 and repaired + backups[0].read_bytes() == torn
    assert repaired.endswith(b"\n") and whole.startswith(repaired)
    assert invoke("pareto", folder).exit_code == 0  # readable again: the torn record alone is gone
    again = invoke("repair", folder)
    assert again.exit_code == 0 and "intact" in again.stdout


def test_optimize_repairs_a_torn_journal_before_resuming(base_run, run):
    recipe, _ = base_run
    folder, _ = run
    whole = (folder / "study.journal").read_bytes()
    with open(folder / "study.journal", "ab") as fh:  # a crash in the middle of appending a record
        fh.write(b'{"op_code":8,"worker_id":"x","trial_id":1,"user_a')
    result = invoke("optimize", recipe, "--out", folder)  # budget already met: nothing to train
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "repaired" in result.stderr and "torn tail of 49 bytes" in result.stderr
    assert "0 trial(s) left running" not in result.stdout
    assert (folder / "study.journal").read_bytes().startswith(whole)
    from flightco.journal import check_journal

    assert check_journal(folder / "study.journal").intact
    assert invoke("pareto", folder).exit_code == 0


def test_damage_before_valid_records_is_not_auto_repaired(run):
    folder, _ = run
    journal = folder / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b"garbage\n"] + lines[2:]))
    before = snapshot(folder)
    one_line_error(invoke("repair", folder), "damaged at line 3", "cannot be repaired automatically")
    one_line_error(invoke("pareto", folder), "damaged at line 3")
    assert_unchanged(folder, before)


def test_resume_with_changed_search_definition_names_the_field(base_run, run, tmp_path):
    folder, before = run
    changed = recipe_file(tmp_path, "changed.yaml", **{k: v for k, v in base_recipe().items()},
                          constraints=["memory_kb <= 150"])
    one_line_error(invoke("optimize", changed, "--out", folder), "search definition changed", "changed: constraints")
    assert_unchanged(folder, before)


def test_resume_with_changed_final_settings_is_allowed_and_said(run, tmp_path):
    folder, _ = run
    r = base_recipe()
    r["training"] = dict(r["training"], final={"epochs": 0.25, "batch_size": 64}, reference_bits=4)
    path = tmp_path / "final_changed.yaml"
    path.write_text(yaml.safe_dump(r))
    result = invoke("optimize", path, "--out", folder)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "final-stage settings changed" in result.stderr
    assert "training.final" in result.stderr and "training.reference_bits" in result.stderr


def test_second_process_on_the_same_run_folder_is_refused(base_run, run):
    recipe, _ = base_run
    folder, before = run
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        one_line_error(invoke("optimize", recipe, "--out", folder), "another flightco process")
    assert_unchanged(folder, before)


def test_sqlite_relative_path_is_stored_absolute(tmp_path, monkeypatch):
    from flightco.runs import normalize_storage_url

    monkeypatch.chdir(tmp_path)
    assert normalize_storage_url("sqlite:///studies.db") == f"sqlite:///{tmp_path.resolve()}/studies.db"
    assert normalize_storage_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert normalize_storage_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_missing_sqlite_file_is_refused_not_created(run, tmp_path):
    folder, _ = run
    info = json.loads((folder / "run.json").read_text())
    db = tmp_path / "gone.db"
    info["storage"] = f"sqlite:///{db}"
    (folder / "run.json").write_text(json.dumps(info))
    one_line_error(invoke("pareto", folder), "gone.db", "does not exist")
    assert not db.exists()


# ---- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,reserved", [("run", "run.json"), ("study.journal", "study.journal"),
                                           ("trials/0000/model.onnx", "trials"), ("finals.json", "finals.json")])
def test_export_never_replaces_run_folder_files(run, name, reserved):
    folder, before = run
    one_line_error(invoke("export", folder, "--trial", 0, "--out", folder / name),
                   "--out", "would overwrite run folder", reserved)
    assert_unchanged(folder, before)


def test_export_below_a_file(run, tmp_path):
    folder, before = run
    _write(tmp_path, "afile", "x")
    one_line_error(invoke("export", folder, "--trial", 0, "--out", tmp_path / "afile" / "sub.onnx"),
                   "--out", "is a file, not a folder")
    assert_unchanged(folder, before)


def test_export_out_is_a_folder(run, tmp_path):
    folder, _ = run
    one_line_error(invoke("export", folder, "--trial", 0, "--out", tmp_path), "--out", "is a folder")


@pytest.mark.parametrize("value", ["2", "-0.1", "1.5"])
def test_export_min_agreement_is_a_fraction(run, tmp_path, value):
    folder, _ = run
    one_line_error(invoke("export", folder, "--trial", 0, "--out", tmp_path / "m.onnx", "--min-agreement", value),
                   "--min-agreement")
    assert not (tmp_path / "m.onnx").exists()


def test_export_missing_trial(run, tmp_path):
    folder, before = run
    one_line_error(invoke("export", folder, "--trial", 99, "--out", tmp_path / "m.onnx"), "trial 99 does not exist")
    assert_unchanged(folder, before)


def test_export_final_weights_of_a_trial_without_finals(run, tmp_path):
    folder, before = run
    one_line_error(invoke("export", folder, "--trial", 0, "--out", tmp_path / "m.onnx", "--weights", "final"),
                   "no final weights")
    assert_unchanged(folder, before)


def test_export_float_stem_outside_onnx_int(run, tmp_path):
    folder, before = run
    one_line_error(invoke("export", folder, "--trial", 0, "--out", tmp_path / "m.onnx", "--format", "qcdq",
                          "--float-stem"), "--float-stem applies to --format onnx-int only")
    assert not (tmp_path / "m.onnx").exists()
    assert_unchanged(folder, before)


@pytest.mark.parametrize("option,value", [("--weights", "best"), ("--format", "tflite"), ("--trial", "first")])
def test_export_bad_choices_are_one_line_usage_errors(run, tmp_path, option, value):
    folder, _ = run
    args = {"--trial": "0", "--out": str(tmp_path / "m.onnx"), option: value}
    line = one_line_error(invoke("export", folder, *[x for kv in args.items() for x in kv]), option)
    assert "--help" in line


def test_export_reports_are_named_after_the_full_file_name(base_run, tmp_path):
    from flightco.export import report_paths

    assert report_paths(Path("out/model.onnx")) == (Path("out/model.onnx.json"), Path("out/model.onnx.md"))
    assert report_paths(Path("RUN/run.onnx"))[0].name == "run.onnx.json"  # never RUN/run.json


# ---- pareto / show arguments --------------------------------------------------------------------


def test_pareto_csv_to_a_folder(run, tmp_path):
    folder, before = run
    one_line_error(invoke("pareto", folder, "--csv", tmp_path), "--csv", "is a folder")
    assert_unchanged(folder, before)


def test_pareto_csv_below_a_file(run, tmp_path):
    folder, _ = run
    _write(tmp_path, "afile", "x")
    one_line_error(invoke("pareto", folder, "--csv", tmp_path / "afile" / "f.csv"), "--csv", "is a file, not a folder")


def test_pareto_csv_into_run_folder_is_refused(run):
    folder, before = run
    one_line_error(invoke("pareto", folder, "--csv", folder / "study.journal"), "--csv", "would overwrite")
    assert_unchanged(folder, before)


@pytest.mark.parametrize("name", ["front.txt", "front.jpeg"])
def test_pareto_plot_with_an_unknown_suffix(run, tmp_path, name):
    folder, _ = run
    one_line_error(invoke("pareto", folder, "--plot", tmp_path / name), "--plot", ".png, .svg, .pdf")
    assert not (tmp_path / name).exists()


def test_pareto_plot_to_a_folder(run, tmp_path):
    folder, _ = run
    (tmp_path / "d.png").mkdir()
    one_line_error(invoke("pareto", folder, "--plot", tmp_path / "d.png"), "--plot", "is a folder")


def test_pareto_plot_without_suffix_says_the_file_it_wrote(run, tmp_path):
    folder, before = run
    result = invoke("pareto", folder, "--plot", tmp_path / "front")
    assert result.exit_code == 0, result.stderr
    assert f"wrote {tmp_path / 'front.png'}" in result.stdout
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert_unchanged(folder, before)


def test_pareto_bad_format(run):
    folder, _ = run
    one_line_error(invoke("pareto", folder, "--format", "xml"), "--format")


def test_pareto_machine_readable_output(run, tmp_path):
    import pandas as pd

    folder, before = run
    as_json = invoke("pareto", folder, "--all", "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert len(rows) == 2 and all(isinstance(r["macs"], int) and isinstance(r["trial"], int) for r in rows)
    as_csv = invoke("pareto", folder, "--all", "--format", "csv", "--csv", tmp_path / "all.csv")
    assert as_csv.exit_code == 0, as_csv.stderr
    df = pd.read_csv(tmp_path / "all.csv")
    assert as_csv.stdout == (tmp_path / "all.csv").read_text()
    assert df["macs"].dtype.kind == "i"
    for v in df["energy_mj"]:  # 6 significant digits, no float noise
        assert len(f"{v:.15g}".replace(".", "").lstrip("0").rstrip("0")) <= 6
    assert_unchanged(folder, before)


def test_piped_table_is_not_cut(run):
    folder, _ = run
    result = invoke("pareto", folder, "--all")
    assert result.exit_code == 0
    assert "final_test_accuracy" in result.stdout and "…" not in result.stdout


def test_show_a_missing_trial(run):
    folder, before = run
    one_line_error(invoke("show", folder, "--trial", 42), "--trial", "trial 42 does not exist")
    assert_unchanged(folder, before)


def test_show_json_has_architecture_bits_costs_and_weights(run):
    from flightco.hw.workload import workload
    from flightco.space import Genome

    folder, before = run
    result = invoke("show", folder, "--trial", 0, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    genome = Genome.from_dict(info["architecture"])
    assert [layer["kernel"] for layer in info["layers"]] == [lw.name for lw in workload(genome)]
    assert all(layer["w_bits"] == "-" for layer in info["layers"] if layer["op"] in ("add", "pool"))
    assert set(info["costs"]["bitfusion-45nm"]) == {"latency_ms", "energy_mj", "memory_kb"}
    assert Path(info["weights"]["proxy"]).is_file() and info["state"] == "complete"
    table = invoke("show", folder, "--trial", 0)
    assert table.exit_code == 0 and "Layers" in table.stdout and "proxy weights" in table.stdout
    assert_unchanged(folder, before)


@pytest.mark.parametrize("args", [["optimize", "R", "--trials", "0"], ["optimize", "R", "--timeout", "-3"],
                                  ["optimize", "R", "--finalists", "-1"], ["nosuchcommand"], ["export", "RUN"]])
def test_cli_argument_errors_are_one_line(base_run, args):
    recipe, folder = base_run
    args = [str(recipe) if a == "R" else str(folder) if a == "RUN" else a for a in args]
    one_line_error(invoke(*args), "--help")


def test_help_lists_choices():
    result = invoke("export", "--help")
    assert "auto|final|proxy|reference" in result.stdout and "qcdq|qonnx" in result.stdout
    assert "table|csv|json" in invoke("pareto", "--help").stdout


def _all_commands():
    from typer.main import get_command

    from flightco.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(get_command(app), []))


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p) or "flightco")
def test_help_shows_no_value_type_on_flags(path):
    """An on/off flag takes no value, so `--help` must not print `<bool>` beside it."""
    result = invoke(*path, "--help")
    assert result.exit_code == 0 and "--help" in result.stdout
    assert "<bool>" not in result.stdout


# ---- the real entry point (subprocesses): no traceback escapes ---------------------------------


def test_real_entry_point_binary_recipe(tmp_path):
    path = _write(tmp_path, "recipe.yaml", b"\x89PNG\x00\xff")
    one_line_error(run_cli("optimize", path, "--out", tmp_path / "o"), "not a text file")


def test_real_entry_point_torn_journal_and_bad_usage(run, tmp_path):
    folder, _ = run
    _tear(folder)
    before = snapshot(folder)
    one_line_error(run_cli("pareto", folder), "torn", "flightco repair")
    one_line_error(run_cli("export", folder, "--trial", "0", "--out", tmp_path / "m.onnx", "--min-agreement", "2"),
                   "--min-agreement")
    assert_unchanged(folder, before)


# ---- crash safety of the search loop ------------------------------------------------------------


def _journal_study(tmp_path: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    return optuna.create_study(study_name="s", storage=storage, directions=["maximize"])


def test_ctrl_c_during_a_trial_is_retried_like_a_killed_one(tmp_path):
    from optuna.trial import TrialState

    from flightco.study import _run_one

    study = _journal_study(tmp_path)
    trial = study.ask()
    trial.suggest_categorical("x", [1, 2, 3])

    def interrupted(_trial):
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of training

    with pytest.raises(KeyboardInterrupt):
        _run_one(study, trial, interrupted, heartbeat=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "interrupted" in trials[0].user_attrs["status"]
    assert trials[1].params == trials[0].params and trials[1].params  # retried with the same parameters


def test_ctrl_c_inside_optunas_journal_lock_is_still_a_ctrl_c(tmp_path):
    """Ctrl-C while Optuna acquires its journal lock makes it release a lock file it never created;
    the FileNotFoundError that surfaces must be handled as the Ctrl-C it is (exit 130, trial
    retried), not as an unwritable artifact folder (seen as exit 2 in the real Ctrl-C test)."""
    from optuna.trial import TrialState

    from flightco.study import _run_one

    study = _journal_study(tmp_path)
    trial = study.ask()
    trial.suggest_categorical("x", [1, 2, 3])

    def interrupted_in_the_lock(_trial):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:  # what optuna's acquire() does: release() and that fails
            raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "study.journal.lockX.rename"))

    with pytest.raises(KeyboardInterrupt):
        _run_one(study, trial, interrupted_in_the_lock, heartbeat=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "interrupted" in trials[0].user_attrs["status"]


def test_stale_journal_lock_is_removed_under_the_run_lock(tmp_path):
    """A writer killed inside Optuna's journal lock leaves `study.journal.lock`; the next search
    (holding the run folder's lock, so no one else writes) removes it instead of waiting 30 s."""
    from flightco.runs import exclusive_run_lock

    (tmp_path / "study.journal.lock").write_text("")
    (tmp_path / "study.journal.lockabc.rename").write_text("")
    (tmp_path / "study.journal").write_text("")
    with exclusive_run_lock(tmp_path):
        assert not (tmp_path / "study.journal.lock").exists()
        assert not list(tmp_path.glob("*.rename")) and (tmp_path / "study.journal").exists()


def test_finals_file_lists_finalists_of_every_session(tmp_path):
    from flightco.search import write_finals_file

    study = _journal_study(tmp_path)
    study.set_user_attr("final:7", {"trial": 7, "final": {"test_accuracy": 0.9}})  # an earlier session
    study.set_user_attr("final:3", {"trial": 3, "final": {"test_accuracy": 0.8}})  # this session
    write_finals_file(study, tmp_path)
    assert [e["trial"] for e in json.loads((tmp_path / "finals.json").read_text())] == [3, 7]


def test_progress_best_counts_earlier_sessions(run):
    from flightco.progress import best_so_far
    from flightco.runs import load_study

    folder, _ = run
    _, study = load_study(folder)
    accs = [t.user_attrs["proxy"]["val_accuracy"] for t in study.trials if "proxy" in t.user_attrs]
    assert best_so_far(study)["accuracy"] == max(accs)


def test_breakdown_shows_no_weight_bits_for_add_and_pool(run):
    folder, before = run
    result = invoke("profile", "breakdown", BITFUSION, "--run", folder, "--trial", 0)
    assert result.exit_code == 0, result.stderr
    rows = [ln.split() for ln in result.stdout.splitlines() if ln.split()[:2] and ln.split()[1] in ("add", "pool")]
    assert rows and all(not any(cell.startswith("W") for cell in r) for r in rows), rows
    assert_unchanged(folder, before)


def test_journal_check_finds_the_end_of_the_valid_records(tmp_path):
    from flightco.journal import check_journal

    path = tmp_path / "j"
    good = b'{"op_code": 0}\n{"op_code": 1}\n'
    path.write_bytes(good + b'{"op_code": 2')
    c = check_journal(path)
    assert (c.good_bytes, c.bad_bytes, c.first_bad_line, c.valid_after_damage) == (len(good), 13, 3, False)
    path.write_bytes(good + b"[1]\n" + good)
    assert check_journal(path).valid_after_damage  # a JSON line that is not a record is damage too
    assert check_journal(tmp_path / "missing").intact
