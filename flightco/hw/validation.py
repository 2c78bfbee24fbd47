"""Validation records kept inside profile YAMLs, and the provenance that searches store.

A profile is only as useful as its agreement with the hardware it stands for, so each profile
carries a ``validation:`` list: what it was compared with, on how many rows, with which
figures, when, and with which tool versions. ``profile eval --record`` and ``profile validate
--record`` write it; ``profile show`` prints it. Records are spliced into the file's text so
that the comments and sources a person wrote above stay as they are.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from flightco.errors import ProfileError

TOOLS = ("flightco", "numpy", "scikit-learn", "onnxruntime")


def tool_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the packages a figure depends on (those installed)."""
    out = {"python": platform.python_version()}
    for name in TOOLS + extra:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "flightco":
                from flightco import __version__

                out[name] = __version__
    return out


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None (JSON has no NaN: ``json.dumps`` would write invalid JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def validation_entry(against: str, report: dict[str, dict[str, Any]], **details: Any) -> dict[str, Any]:
    """One record: what was compared (``against``), the figures per metric, date and tool versions."""
    figures = {m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
               for m, r in json_safe(report).items()}
    return {"against": against, **details, "metrics": figures,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), "tools": tool_versions()}


def _split_validation(text: str) -> tuple[str, str]:
    """The file's text without its top-level ``validation:`` block, and that block."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith("validation:")), None)
    if start is None:
        return text, ""
    end = next((j for j in range(start + 1, len(lines))
                if lines[j].strip() and not lines[j][0].isspace() and not lines[j].startswith(("-", "#"))), len(lines))
    return "".join(lines[:start] + lines[end:]), "".join(lines[start:end])


def record_validation(path: str | Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``entry`` to the profile's validation list (replacing one with the same ``against``)
    and rewrite the file atomically; returns the new list."""
    from flightco.atomic import write_text

    path = Path(path)
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    old = data.get("validation") or []
    if isinstance(old, dict):
        old = [old]
    records = [r for r in old if isinstance(r, dict) and r.get("against") != entry["against"]] + [entry]
    body, _ = _split_validation(text)
    block = yaml.safe_dump({"validation": records}, sort_keys=False, default_flow_style=False, width=200)
    new = body.rstrip("\n") + "\n" + block
    try:
        yaml.safe_load(new)
    except yaml.YAMLError as exc:  # never leave a profile unreadable
        raise ProfileError(f"{path}: cannot add the validation block ({exc})") from None
    write_text(path, new)
    return records


def profile_provenance(path: str | Path) -> dict[str, Any]:
    """Name, kind, version and a short hash of a profile's content (validation records excluded,
    so recording a validation does not change what priced a search)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    content = {k: v for k, v in data.items() if k != "validation"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return {"name": data.get("name", path.stem), "kind": data.get("kind"), "version": str(data.get("version", "1")),
            "sha": digest, "file": path.name}


def describe_provenance(records: list[dict[str, Any]] | None) -> str:
    """One line for reports: which profile versions priced a study."""
    if not records:
        return "priced by: (not recorded: a study created before flightco stored profile versions)"
    return "priced by: " + ", ".join(f"{r['name']} v{r['version']} ({r['kind']}, sha {r['sha']})" for r in records)
