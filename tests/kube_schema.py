"""Offline validation of rendered Kubernetes objects.

Built-in kinds are deserialized into the ``kubernetes`` client's model classes (ApiClient's
deserializer: required fields and primitive types) and walked against the models'
``openapi_types``/``attribute_map``, failing on any field the API does not have (the models
themselves drop unknown fields silently, and the API server would too, with only a warning).
The two Prometheus Operator kinds are not in the client: they are checked against the subset
of their CRD schema (monitoring.coreos.com/v1) that a ServiceMonitor and a PrometheusRule use.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client as k8s
from kubernetes.client import ApiClient

_PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool}


def model_name(obj: dict) -> str:
    """``apps/v1`` + ``Deployment`` -> ``V1Deployment``."""
    version = obj["apiVersion"].rpartition("/")[2]
    return version[0].upper() + version[1:] + obj["kind"]


def _walk(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    if value is None:
        return
    if type_name in ("object", "datetime", "date"):
        return
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        if not isinstance(value, expected) or (type_name != "bool" and isinstance(value, bool)):
            problems.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _walk(item, m.group(1), f"{path}[{i}]", problems)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping")
            return
        for key, item in value.items():
            _walk(item, m.group(1), f"{path}.{key}", problems)
        return
    cls = getattr(k8s, type_name)
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a {type_name} mapping")
        return
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        _walk(item, cls.openapi_types[by_json[key]], f"{path}.{key}", problems)


def validate_builtin(obj: dict) -> list[str]:
    """Problems of one built-in object (empty: valid). Raises for a kind the client lacks."""
    name = model_name(obj)
    if not hasattr(k8s, name):
        raise KeyError(f"no model {name} for {obj['apiVersion']} {obj['kind']}")
    problems: list[str] = []
    where = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
    _walk(obj, name, where, problems)
    try:
        ApiClient()._ApiClient__deserialize(obj, name)  # required fields, value checks
    except (ValueError, TypeError) as err:
        problems.append(f"{where}: {err}")
    return problems


# -- the Prometheus Operator's kinds (monitoring.coreos.com/v1), the fields canary-guard uses --

_RELABEL = {"action": str, "sourceLabels": [str], "separator": str, "targetLabel": str,
            "regex": str, "modulus": int, "replacement": str}
_SECRET_KEY = {"name": str, "key": str, "optional": bool}
_ENDPOINT = {
    "port": str, "targetPort": (int, str), "path": str, "scheme": str, "interval": str,
    "scrapeTimeout": str, "honorLabels": bool, "honorTimestamps": bool, "params": dict,
    "relabelings": [_RELABEL], "metricRelabelings": [_RELABEL], "bearerTokenSecret": _SECRET_KEY,
    "authorization": {"type": str, "credentials": _SECRET_KEY},
}
_LABEL_SELECTOR = {"matchLabels": {str: str},
                   "matchExpressions": [{"key": str, "operator": str, "values": [str]}]}
_METADATA = {"name": str, "namespace": str, "labels": {str: str}, "annotations": {str: str}}
_RULE = {"record": str, "alert": str, "expr": (str, int), "for": str, "keep_firing_for": str,
         "labels": {str: str}, "annotations": {str: str}}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "apiVersion": str, "kind": str, "metadata": _METADATA,
        "spec": {"selector": _LABEL_SELECTOR, "namespaceSelector": {"any": bool, "matchNames": [str]},
                 "endpoints": [_ENDPOINT], "jobLabel": str, "targetLabels": [str],
                 "podTargetLabels": [str], "sampleLimit": int},
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "apiVersion": str, "kind": str, "metadata": _METADATA,
        "spec": {"selector": _LABEL_SELECTOR, "namespaceSelector": {"any": bool, "matchNames": [str]},
                 "podMetricsEndpoints": [_ENDPOINT], "jobLabel": str, "podTargetLabels": [str],
                 "sampleLimit": int},
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "apiVersion": str, "kind": str, "metadata": _METADATA,
        "spec": {"groups": [{"name": str, "interval": str, "limit": int, "partial_response_strategy": str,
                             "rules": [_RULE]}]},
    },
}
_REQUIRED = {"ServiceMonitor": [("spec", "selector"), ("spec", "endpoints")],
             "PodMonitor": [("spec", "selector"), ("spec", "podMetricsEndpoints")],
             "PrometheusRule": [("spec", "groups")]}


def _check(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    if isinstance(schema, dict) and schema and all(isinstance(k, type) for k in schema):
        (key_type, value_schema), = schema.items()
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping")
            return
        for key, item in value.items():
            if not isinstance(key, key_type):
                problems.append(f"{path}: key {key!r} is not {key_type.__name__}")
            _check(item, value_schema, f"{path}.{key}", problems)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping")
            return
        for key, item in value.items():
            if key not in schema:
                problems.append(f"{path}.{key}: unknown field")
            else:
                _check(item, schema[key], f"{path}.{key}", problems)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _check(item, schema[0], f"{path}[{i}]", problems)
    elif schema is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping")
    elif not isinstance(value, schema) or (schema is int and isinstance(value, bool)):
        problems.append(f"{path}: expected {schema}, got {value!r}")


def validate_crd(obj: dict) -> list[str]:
    schema = CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
    problems: list[str] = []
    where = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
    _check(obj, schema, where, problems)
    for field_path in _REQUIRED[obj["kind"]]:
        node: Any = obj
        for key in field_path:
            node = node.get(key) if isinstance(node, dict) else None
        if not node:
            problems.append(f"{where}.{'.'.join(field_path)}: required")
    return problems


def validate(obj: dict) -> list[str]:
    if (obj.get("apiVersion"), obj.get("kind")) in CRD_SCHEMAS:
        return validate_crd(obj)
    return validate_builtin(obj)
