"""Recipe schema: one YAML file says what to search, on what data, for which hardware.

Relative paths inside a recipe (search space, hardware profiles, dataset root) are resolved
against the recipe file's folder, as docker-compose does, so a recipe works from any
current directory. The output folder is relative to the current directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flightco.errors import RecipeError
from flightco.yamlio import read_yaml, validate

COST_METRICS = ("latency_ms", "energy_mj", "memory_kb")
MODEL_METRICS = ("accuracy", "macs", "params", "weight_kb")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    name: str = "mnist5k"
    root: str | None = Field(None, description="folder or file for datasets read from disk")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    limit_train: int | None = Field(None, gt=0, description="use only this many training images")
    options: dict[str, Any] = Field(default_factory=dict, description="loader-specific options")


class Objective(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"]


class Constraint(_Strict):
    metric: str
    op: Literal["<=", ">=", "<", ">"]
    bound: float

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible, positive values measure the violation."""
        return value - self.bound if self.op in ("<=", "<") else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


class TrainSpec(_Strict):
    epochs: float = Field(gt=0)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class TrainingSpec(_Strict):
    """Two-stage training: a short proxy per candidate, longer training for the finalists."""

    proxy: TrainSpec = TrainSpec(epochs=1, batch_size=128, lr=5e-3)
    final: TrainSpec = TrainSpec(epochs=8, batch_size=64, lr=3e-3)
    finalists: int = Field(2, ge=0, description="front members retrained with the final budget")
    reference_bits: int | None = Field(
        8, description="train a uniform-precision twin of each finalist for comparison (null: off)"
    )

    @field_validator("reference_bits")
    @classmethod
    def _ref(cls, v: int | None) -> int | None:
        if v is not None and v not in (2, 3, 4, 5, 6, 8):
            raise ValueError("must be one of 2, 3, 4, 5, 6, 8 or null")
        return v


class EarlyStoppingSpec(_Strict):
    """Multi-objective early stopping of proxy training (MO-ASHA; see flightco/early_stop.py)."""

    enabled: bool = Field(True, description="false: only record accuracy at the rungs (to replay the rule offline)")
    rungs: list[float] = Field(default_factory=lambda: [0.25, 0.5], min_length=1,
                               description="fractions of the proxy training at which trials are judged "
                                           "(per_trial; the supernet strategy judges once, before fine-tuning)")
    eta: int = Field(3, ge=2, description="a trial goes on while fewer than 1/eta of the ranked trials are in better fronts")
    min_peers: int = Field(6, ge=1, description="earlier trials needed at a rung before any trial is stopped there")
    bn_batches: int = Field(5, ge=1, description="training batches that recalibrate BatchNorm before each rung's evaluation")

    @field_validator("rungs")
    @classmethod
    def _rungs(cls, v: list[float]) -> list[float]:
        if any(not 0 < r < 1 for r in v) or sorted(set(v)) != v:
            raise ValueError("rungs must be increasing fractions strictly between 0 and 1, e.g. [0.25, 0.5]")
        return v


class PredictorSpec(_Strict):
    """The supernet strategy's accuracy predictor (flightco/predictor_search.py): fitted on the
    supernet's scored subnets, it searches thousands of candidates and queues its predicted front."""

    min_records: int = Field(16, ge=5, description="scored subnets (this run's and earlier searches' of the same supernet) "
                                                   "before the first fit; it is refitted each time they double")
    enqueue: int = Field(8, ge=1, description="predicted-front subnets queued for real scoring per fit")
    samples: int = Field(1000, ge=100, description="candidates the predictor scores per fit (an NSGA-II search, "
                                                   "about 3 ms each)")


class ScoreScaleSpec(_Strict):
    """The supernet score's stretch against from-scratch training (flightco/score_scale.py): measured
    once per supernet on a few front members, it maps the score onto the proxy's scale before the
    finalists are chosen."""

    members: int = Field(4, ge=3, description="front members, spread along the primary cost, trained from scratch "
                                              "with the proxy budget (a slope and its correlation are fitted)")
    after_scored: int = Field(16, ge=3, description="subnets scored in this search before its front is trusted "
                                                    "to pick them from")


class SupernetSpec(_Strict):
    """Training of the weight-sharing supernet (``strategy: supernet``; see flightco/nn/supernet.py)."""

    epochs: float = Field(6.0, gt=0)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(3e-3, gt=0)
    random_subnets: int = Field(2, ge=0, description="random subnets per step besides the largest and the smallest")
    children_bits: Literal["top", "random"] = Field(
        "top", description="top: children train at the space's highest bit-widths, lower ones come from each "
                           "subnet's recalibration (ranks better, measured); random: a random bit assignment per child")
    children_sizes: Literal["choices", "spread"] = Field(
        "choices", description="choices: the random children draw every choice uniformly (mostly mid-sized networks); "
                               "spread: a size level first, so children cover the cheap end as often as the middle")
    bit_warmup: float = Field(0.0, ge=0, description="children_bits random: share of the steps before the children "
                                                     "use the lowest bit-widths (0: all bit-widths from the start)")
    calibration_images: int = Field(256, ge=16, description="training images that recalibrate each extracted subnet")
    finetune_steps: int = Field(25, ge=0, description="QAT steps (batch 64) each extracted subnet trains at its own "
                                                      "bits before it is scored (0: score the inherited weights as they are; "
                                                      "25 ranked and searched better than 0, measured: README)")
    finetune_lr: float = Field(1e-3, gt=0, description="learning rate of those steps (one-cycle schedule)")
    predictor: PredictorSpec | None = Field(
        PredictorSpec(), description="accuracy predictor that queues its predicted front for scoring (null: off)")
    score_scale: ScoreScaleSpec | None = Field(
        None, description="measure how stretched the supernet's score is against from-scratch training and "
                          "choose finalists on the score mapped onto the proxy's scale (off by default: "
                          "{} turns it on with the defaults)")


class SearchSpec(_Strict):
    trials: int | None = Field(24, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    population_size: int = Field(8, ge=2, description="NSGA-II population")
    seed: int = 0
    strategy: Literal["per_trial", "supernet"] = Field(
        "per_trial", description="per_trial: train every candidate briefly; supernet: inherit weights from one supernet")
    supernet: SupernetSpec = SupernetSpec()
    early_stopping: EarlyStoppingSpec | None = Field(
        None, description="stop hopeless candidates (per_trial: at the rungs of their proxy training; supernet: on "
                          "their inherited accuracy, before their fine-tuning steps; null: off)")
    hypervolume_reference: dict[str, float] | None = Field(
        None, description="reference point (objective metric -> value) of the run's hypervolume; default in flightco/hypervolume.py")

    @model_validator(mode="after")
    def _budget(self) -> SearchSpec:
        if self.trials is None and self.timeout_s is None:
            raise ValueError("set trials, timeout_s or both")
        if self.strategy == "supernet" and self.early_stopping is not None and self.supernet.finetune_steps == 0:
            raise ValueError("early_stopping under strategy supernet decides which subnets are fine-tuned, so it needs "
                             "supernet.finetune_steps > 0 (or early_stopping: null)")
        return self


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    search_space: str
    space_hints: str | None = Field(
        None, description="space_hints.yaml from `flightco characterize`: choices removed from the space before the study starts")
    hardware: list[str] = Field(min_length=1, description="profile files; the first one's costs are unprefixed")
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    training: TrainingSpec = TrainingSpec()
    search: SearchSpec = SearchSpec()
    storage: str | None = Field(None, description="Optuna storage URL; default: journal file in the output folder")
    output: str | None = Field(None, description="run folder; default outputs/<name>")
    threads: int = Field(2, ge=1, description="torch threads")

    # set by load_recipe; not part of the YAML
    base_dir: str = Field(".", exclude=True)

    @field_validator("constraints", mode="before")
    @classmethod
    def _parse_constraints(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                m = _CONSTRAINT.match(item)
                if not m:
                    raise ValueError(f"constraint {item!r} must look like 'latency_ms <= 2.0'")
                out.append({"metric": m.group(1), "op": m.group(2), "bound": float(m.group(3))})
            else:
                out.append(item)
        return out

    @model_validator(mode="after")
    def _metrics_known(self) -> Recipe:
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError("objectives: each metric may appear once")
        for where, metric in [("objectives", o.metric) for o in self.objectives] + [
            ("constraints", c.metric) for c in self.constraints
        ]:
            base = metric.split(".", 1)[1] if "." in metric else metric
            if base not in COST_METRICS + MODEL_METRICS:
                allowed = ", ".join(MODEL_METRICS + COST_METRICS)
                raise ValueError(f"{where}: unknown metric {metric!r}; allowed: {allowed} (or <profile>.<cost metric>)")
        if any(c.metric == "accuracy" for c in self.constraints):
            raise ValueError("constraints: accuracy is only known after training; use it as an objective")
        return self

    # ---- paths ---------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p)

    @property
    def search_space_path(self) -> Path:
        return self.resolve(self.search_space)

    @property
    def space_hints_path(self) -> Path | None:
        return self.resolve(self.space_hints) if self.space_hints else None

    @property
    def hardware_paths(self) -> list[Path]:
        return [self.resolve(h) for h in self.hardware]

    @property
    def dataset_root(self) -> Path | None:
        return self.resolve(self.dataset.root) if self.dataset.root else None

    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("outputs") / self.name

    def to_stored(self) -> dict[str, Any]:
        """The recipe as stored with a study: file paths made absolute, and the search space's and
        profiles' YAML texts embedded, so a worker on another machine needs only the storage."""
        d = self.model_dump(mode="json")
        if d.get("storage"):
            from flightco.runs import strip_password

            d["storage"] = strip_password(d["storage"])  # a password never goes into the study
        d["search_space"] = str(self.search_space_path.resolve())
        d["hardware"] = [str(p.resolve()) for p in self.hardware_paths]
        if self.space_hints_path is not None:
            d["space_hints"] = str(self.space_hints_path.resolve())
        if self.dataset.root:
            d["dataset"]["root"] = str(self.dataset_root.resolve())
        d["constraints"] = [str(c) for c in self.constraints]
        d["files"] = {
            "search_space": self.search_space_path.read_text(),
            "hardware": [p.read_text() for p in self.hardware_paths],
        }
        if self.space_hints_path is not None:
            d["files"]["space_hints"] = self.space_hints_path.read_text()
        return d

    def search_fingerprint_parts(self) -> dict[str, str]:
        """Hashes of each part of the recipe that defines the search (the *contents* of its search
        space and profiles, not their paths; not the budget, output, storage or threads; not the
        final-stage settings ``training.final``, ``training.finalists``, ``training.reference_bits``,
        which only matter after the search and may change on resume). Kept per part so a refused
        resume can say which part changed."""
        d = self.to_stored()
        files = d["files"]

        def h(v: Any) -> str:
            return hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]

        return {
            "name": h(d["name"]),
            "dataset": h(d["dataset"]),
            "objectives": h(d["objectives"]),
            "constraints": h(d["constraints"]),
            "training.proxy": h(d["training"]["proxy"]),
            "search.seed": h(self.search.seed),
            "search.sampler": h(self.search.sampler),
            "search.population_size": h(self.search.population_size),
            # inherited and trained accuracies never mix in one study
            "search.strategy": h([self.search.strategy, self.search.supernet.model_dump(mode="json")
                                  if self.search.strategy == "supernet" else None]),
            "search_space (file contents)": h(files["search_space"]),
            "hardware (profile contents)": h([_profile_content(text) for text in files["hardware"]]),
            # only when set, so that runs made before space hints existed keep their fingerprint
            **({"space_hints (file contents)": h(files["space_hints"])} if "space_hints" in files else {}),
        }

    def search_fingerprint(self) -> str:
        """Hash of what defines the search (see :meth:`search_fingerprint_parts`).
        A resumed run or an attaching worker must match it."""
        return hashlib.sha256(json.dumps(self.search_fingerprint_parts(), sort_keys=True).encode()).hexdigest()[:16]

    def final_settings(self) -> dict[str, Any]:
        """The final-stage settings, which may change between sessions of one run."""
        t = self.training
        return {"training.final": t.final.model_dump(mode="json"), "training.finalists": t.finalists,
                "training.reference_bits": t.reference_bits}


def _profile_content(text: str) -> Any:
    """What a profile prices with: its parsed YAML without the ``validation:`` record (recording a
    validation with `flightco profile eval --record` must not block resuming a run that uses it)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return {k: v for k, v in data.items() if k != "validation"} if isinstance(data, dict) else text


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe; errors are one line naming the file and the field."""
    path = Path(path)
    data = read_yaml(path, RecipeError)
    data = dict(data)
    data["base_dir"] = str(path.parent)
    recipe = validate(Recipe, data, str(path), RecipeError)
    if not recipe.search_space_path.is_file():
        raise RecipeError(f"{path}: search_space: file {recipe.search_space_path} not found")
    if recipe.space_hints_path is not None and not recipe.space_hints_path.is_file():
        raise RecipeError(f"{path}: space_hints: file {recipe.space_hints_path} not found")
    for h in recipe.hardware_paths:
        if not h.is_file():
            raise RecipeError(f"{path}: hardware: profile file {h} not found")
    return recipe


def recipe_from_stored(d: dict[str, Any], files_dir: Path | None = None) -> Recipe:
    """Rebuild a recipe from the copy stored with a study.

    With ``files_dir``, the embedded search-space and profile texts are written there and used
    (a worker's view: nothing but the storage is needed); without it, the stored absolute paths are.
    """
    d = dict(d)
    files = d.pop("files", None)
    if files_dir is not None and files:
        files_dir = Path(files_dir)
        files_dir.mkdir(parents=True, exist_ok=True)
        from flightco.atomic import write_text

        if _differs(files_dir / "search_space.yaml", files["search_space"]):
            write_text(files_dir / "search_space.yaml", files["search_space"])
        d["search_space"] = str(files_dir / "search_space.yaml")
        paths = []
        for i, text in enumerate(files["hardware"]):
            path = files_dir / f"hardware_{i}.yaml"
            if _differs(path, text):
                write_text(path, text)
            paths.append(str(path))
        d["hardware"] = paths
        if files.get("space_hints") is not None:
            hints = files_dir / "space_hints.yaml"
            if _differs(hints, files["space_hints"]):
                write_text(hints, files["space_hints"])
            d["space_hints"] = str(hints)
    return validate(Recipe, d, "stored recipe", RecipeError)


def _differs(path: Path, text: str) -> bool:
    """Whether ``path`` must be (re)written to hold ``text`` (read-only commands then leave an
    up-to-date copy untouched)."""
    try:
        return path.read_text() != text
    except (OSError, UnicodeDecodeError):
        return True
