"""Validate rendered custom resources against the CRD schema extracts in tests/crds/.

Strict like ``kubectl apply --validate=strict``: an object schema that lists ``properties``
and says nothing of ``additionalProperties`` rejects fields it does not list. Subtrees marked
``x-canary-guard-elided`` (not used by the renders, see tests/crds/README.md) accept anything.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from jsonschema import Draft7Validator

CRDS = Path(__file__).resolve().parent / "crds"


def _strict(schema):
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-canary-guard-elided") or schema.get("x-kubernetes-preserve-unknown-fields"):
        return {}
    out = {k: _strict(v) if isinstance(v, dict) else
           [_strict(x) for x in v] if isinstance(v, list) and k in ("oneOf", "anyOf", "allOf") else v
           for k, v in schema.items()}
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def load(name: str) -> dict:
    return _strict(copy.deepcopy(yaml.safe_load((CRDS / name).read_text())))


def problems(obj: dict, schema_file: str) -> list[str]:
    """Every violation as "path: message"; empty when the object is valid."""
    validator = Draft7Validator(load(schema_file))
    out = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path) or "(object)"
        out.append(f"{path}: {err.message}")
    return out
