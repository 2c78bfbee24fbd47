"""Space hints: choices a characterization found dominated on one target, removed before a search.

``flightco characterize`` writes ``space_hints.yaml``; a recipe applies it with
``space_hints: FILE`` (relative to the recipe). Each hint removes one choice of one option of the
search space (``stem.channels``, ``stages[1].kernel``, ``precision.w_bits`` ...) because a larger
choice of the same option measured no more costly on that target, with the evidence (measured
ratios) kept beside it. Applying a hint that names no option or no choice of the space, or that
would leave an option without choices, is refused with a one-line error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flightco.errors import SpaceError
from flightco.space import FLOAT_BITS, SearchSpace
from flightco.yamlio import load_model, validate

_FIELD = re.compile(r"^(stem\.channels|stages\[(\d+)\]\.(channels|depth|expansion|kernel)|"
                    r"precision\.(w_bits|a_bits|first_last_bits))$")


class Hint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    value: int | str
    dominated_by: int | str | None = None
    evidence: str = ""

    @field_validator("field")
    @classmethod
    def _known(cls, v: str) -> str:
        if not _FIELD.match(v):
            raise ValueError(f"{v!r} is not an option of a space; allowed: stem.channels, stages[i].channels|depth|"
                             "expansion|kernel, precision.w_bits|a_bits|first_last_bits")
        return v


class SpaceHints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    space: str = Field(description="name of the space the hints were derived for")
    target: str = Field(description="runtime or profile the choices were measured on")
    remove: list[Hint] = Field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> SpaceHints:
        return load_model(Path(path), cls, SpaceError)


def _normal(v: Any) -> Any:
    if isinstance(v, str) and v.strip().lower() in ("float", "fp32", "float32"):
        return FLOAT_BITS
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def apply_hints(space: SearchSpace, hints: SpaceHints, source: str = "space_hints") -> SearchSpace:
    """``space`` without the hinted choices (errors name the file and the hint)."""
    data = space.model_dump(mode="python")
    if hints.space != space.name:
        raise SpaceError(f"{source}: hints are for space {hints.space!r}, the recipe searches {space.name!r}")
    for i, h in enumerate(hints.remove):
        m = _FIELD.match(h.field)
        assert m is not None
        if h.field == "stem.channels":
            holder, key = data["stem"], "channels"
        elif m.group(2) is not None:
            s = int(m.group(2))
            if s >= len(data["stages"]):
                raise SpaceError(f"{source}: remove[{i}].field {h.field}: the space has {len(data['stages'])} stages")
            holder, key = data["stages"][s], m.group(3)
        else:
            holder, key = data["precision"], m.group(4)
        choices = list(holder[key])
        value = _normal(h.value)
        if value not in choices:
            raise SpaceError(f"{source}: remove[{i}]: {h.value!r} is not a choice of {h.field} ({choices})")
        if len(choices) == 1:
            raise SpaceError(f"{source}: remove[{i}]: removing {h.value!r} would leave {h.field} without choices")
        holder[key] = [c for c in choices if c != value]
    return validate(SearchSpace, data, f"{source} (hinted space)", SpaceError)


def hints_yaml(space: str, target: str, removals: list[dict[str, Any]]) -> str:
    """The ``space_hints.yaml`` text for ``removals`` (see :func:`flightco.cost_shape.dominated_choices`)."""
    import yaml

    items = [{"field": r["field"], "value": _yaml_value(r["value"], r["field"]),
              "dominated_by": _yaml_value(r["dominated_by"], r["field"]),
              "evidence": r["evidence"]} for r in removals]
    head = (f"# Choices of space {space!r} dominated on {target}: a larger choice of the same option costs no more\n"
            "# (within the measured noise) on every base network swept. Apply with `space_hints: <this file>`\n"
            "# in a recipe. Written by `flightco characterize`.\n")
    return head + yaml.safe_dump({"space": space, "target": target, "remove": items}, sort_keys=False, width=120)


def _yaml_value(v: Any, field: str) -> Any:
    n = _normal(v)
    return "float" if n == FLOAT_BITS and field.startswith("precision.") else n
