"""Load YAML files into pydantic models with one-line, field-naming errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from flightco.errors import FlightcoError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path, error: type[FlightcoError]) -> dict[str, Any]:
    """Read a YAML mapping, raising ``error`` (one line) when the file is missing or not a mapping."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, expected a YAML file")
    if not path.is_file():
        raise error(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (not UTF-8); expected YAML") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise error(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's multi-line report into one line: ``field.path: message; ...``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def validate(model: type[M], data: dict[str, Any], source: str, error: type[FlightcoError]) -> M:
    """Validate ``data`` against ``model``; on failure raise ``error`` naming ``source`` and the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: {describe_validation_error(exc)}") from None


def load_model(path: Path, model: type[M], error: type[FlightcoError]) -> M:
    """Read and validate a YAML file in one step."""
    return validate(model, read_yaml(path, error), str(path), error)
