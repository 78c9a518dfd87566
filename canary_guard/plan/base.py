"""Shared pieces of the plan model: the base model, name and duration types, the plan error."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from canary_guard.durations import parse_duration

DEFAULT_PLAN = "recoveryos.yaml"

NAME_RE = r"^[a-z][a-z0-9_]*$"
ALERT_RE = r"^[A-Z][A-Za-z0-9]*$"

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Name = Annotated[str, Field(pattern=NAME_RE, max_length=63)]


class PlanError(Exception):
    """A plan that cannot be used. ``problems`` holds one "path: message" line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid plan:\n" + "\n".join(f"  {p}" for p in problems))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
