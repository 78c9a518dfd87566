"""Reading a plan: YAML to the validated model, every problem named by its field path."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from .actions import ACTION_KINDS, WEIGHT_KINDS
from .base import DEFAULT_PLAN, PlanError
from .model import Plan


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS and i >= 2 and loc[i - 2] == "actions":
            continue  # pydantic names the union member (actions.NAME.KIND); the user did not
        elif part in WEIGHT_KINDS and i >= 2 and loc[i - 2:i] == ("rollout", "weight"):
            continue  # the same for rollout.weight.KIND
        else:
            out += f".{part}" if out else str(part)
    return out


_UNION_TAGS = set(ACTION_KINDS)


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        path = _format_loc(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        for line in msg.split("\n"):
            # cross-field checks already carry their own path
            problems.append(line if (not path or re.match(r"^[a-z_]+[\[.]", line)) else
                            f"{path}: {line}")
    return problems


def parse_plan(data: Any, source: str = "<plan>") -> Plan:
    if not isinstance(data, dict):
        raise PlanError(source, ["(top level): must be a mapping of plan fields"])
    try:
        return TypeAdapter(Plan).validate_python(data)
    except ValidationError as err:
        raise PlanError(source, _problems(err)) from None


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Load and validate a plan file; with no path, the shipped RecoveryOS plan."""
    if path is None:
        text = resources.files("canary_guard").joinpath("plans", DEFAULT_PLAN).read_text()
        source = f"<default plan {DEFAULT_PLAN}>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise PlanError(source, [f"cannot read: {err.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PlanError(source, [f"{where}not valid YAML: {getattr(err, 'problem', err)}"]) from None
    return parse_plan(data, source)


def default_plan_path() -> Path:
    return Path(str(resources.files("canary_guard").joinpath("plans", DEFAULT_PLAN)))
