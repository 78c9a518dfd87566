"""``custom``: the plan's own PromQL, rendered verbatim with the contract's labels."""

from __future__ import annotations

from ..model import AlertRule
from .base import Context, TriggerUnit


class Custom(TriggerUnit):
    kind = "custom"
    value_format = "humanize"
    judges_probes = False  # its inputs are unknown: it may fire on any data

    def windows(self, ctx: Context) -> list[float]:
        return []  # its expression carries its own ranges

    def alert_rules(self, ctx: Context) -> list[AlertRule]:
        t = ctx.trigger
        assert t.expr is not None  # the plan model requires it for custom triggers
        return [ctx.alert(
            t.expr.strip(),
            f"{t.alert} ({t.name})",
            f"Custom trigger {t.name} fired with value {ctx.value}. {ctx.then}",
        )]

    # no test cases: the generator cannot invent the inputs of raw PromQL; promtool check
    # rules covers the expression
