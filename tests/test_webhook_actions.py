"""Every webhook action class is a RollbackAction (the protocol the worker runs), checked at run
time here and statically by mypy (webhook/actions.py's ACTION_CLASSES)."""

from __future__ import annotations

import sys

import yaml
from canary_guard.webhook.actions import ACTION_CLASSES, ActionSet, RollbackAction

from canary_guard.plan import default_plan_path, parse_plan


def test_each_action_kind_builds_a_rollback_action():
    doc = yaml.safe_load(default_plan_path().read_text())
    doc["actions"]["script"] = {"kind": "command", "argv": [sys.executable, "-c", "pass"]}
    doc["actions"]["notify_ops"] = {"kind": "http", "method": "PUT", "url": "http://127.0.0.1:9/ops"}
    actions = ActionSet(parse_plan(doc))
    try:
        built = {type(a) for a in actions.leaves.values()}
        assert built == set(ACTION_CLASSES)  # every class is reached by some plan action kind
        for name, action in actions.leaves.items():
            assert isinstance(action, RollbackAction), name
            assert action.name == name
            assert isinstance(action.kind, str) and action.kind
            assert isinstance(action.timeout, float) and action.timeout > 0
            assert isinstance(action.idempotent, bool)
    finally:
        actions.client.close()
