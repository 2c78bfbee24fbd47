"""Shared fixtures: small real recipes written into a temp folder, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "mobilenet.yaml"
BITFUSION = ROOT / "hw_profiles" / "bitfusion.yaml"


def random_genomes(space, n: int, seed: int = 0) -> list[tuple[dict, object]]:
    """``n`` random (Optuna parameters, Genome) pairs of ``space`` for 28x28 one-channel images."""
    import optuna

    from flightco.space import sample_genome

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = study.ask()
        genome = sample_genome(t, space, in_channels=1, resolution=28, num_classes=10)
        out.append((t.params, genome))
    return out


def tiny_recipe(**overrides) -> dict:
    """A recipe that trains a handful of real MNIST digits for a few steps."""
    recipe = {
        "name": "tiny",
        "dataset": {"name": "mnist5k", "limit_train": 256},
        "search_space": str(SPACE),
        "hardware": [str(BITFUSION)],
        "objectives": [{"metric": "accuracy", "direction": "maximize"},
                       {"metric": "energy_mj", "direction": "minimize"}],
        "constraints": ["memory_kb <= 200"],
        "training": {"proxy": {"epochs": 0.25, "batch_size": 64},
                     "final": {"epochs": 0.5, "batch_size": 64}, "finalists": 1},
        "search": {"trials": 3, "population_size": 2, "seed": 0},
    }
    for key, value in overrides.items():
        recipe[key] = value
    return recipe


@pytest.fixture
def write_recipe(tmp_path):
    def write(recipe: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe))
        return path

    return write


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (as a user would)."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "flightco.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )


@dataclass
class CliResult:
    """What a CLI call returned, in `subprocess.CompletedProcess`'s terms."""

    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: object, timeout: float = 600) -> CliResult:
    """Run the CLI end to end in this process: the same typer app the console script runs, minus
    a fresh interpreter per call (importing torch, Brevitas and onnxruntime costs 4-10 s each time,
    most of the suite's end-to-end time). The real entry point in a subprocess (exit status of the
    process, signals, no traceback escaping `main`) is tested with `run_cli` directly."""
    import traceback

    import torch
    from typer.testing import CliRunner

    from flightco.cli import app

    threads = torch.get_num_threads()  # recipes set torch's thread count; keep the suite's
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    finally:
        torch.set_num_threads(threads)
    stderr = result.stderr
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):  # an escaped exception: show it as a crash
        stderr += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return CliResult(1, result.stdout, stderr)
    return CliResult(result.exit_code, result.stdout, stderr)


@pytest.fixture
def cli():
    """End-to-end CLI calls (in process; see `invoke_cli`)."""
    return invoke_cli
