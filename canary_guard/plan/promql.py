"""PromQL that the plan carries (custom triggers' ``expr``), parsed when the plan is read.

A real parser: ``promql-parser`` (PyPI; Rust bindings of the GreptimeDB parser, which follows
Prometheus's grammar), chosen over promtool because a plan is read everywhere (``plan check``
on a laptop, the webhook, the rollout) where the Prometheus binaries need not be installed, and
because it parses in microseconds in-process where promtool needs a rule file and a process.
promtool still checks every rendered expression in ``rules check``; ``tests/test_plan_promql.py``
holds the two to the same verdict on a corpus of expressions.
"""

from __future__ import annotations

import promql_parser

# Functions the parser knows that Prometheus 2.42 (the version canary-guard is tested with)
# does not: an alert using one would fail to load there.
NEWER_FUNCTIONS = frozenset({
    "sort_by_label", "sort_by_label_desc", "info", "double_exponential_smoothing",
    "histogram_avg", "histogram_stddev", "histogram_stdvar", "mad_over_time", "ts_of_max_over_time",
    "ts_of_min_over_time", "ts_of_last_over_time", "first_over_time", "ts_of_first_over_time",
})
NEWER_AGGREGATIONS = frozenset({"limitk", "limit_ratio"})


def _result_type(expr: promql_parser.Expr) -> str:
    """What an expression evaluates to: vector, scalar, matrix or string."""
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return _result_type(expr.expr)
    if isinstance(expr, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return "matrix"
    if isinstance(expr, promql_parser.StringLiteral):
        return "string"
    if isinstance(expr, promql_parser.NumberLiteral):
        return "scalar"
    if isinstance(expr, promql_parser.Call):
        return str(expr.func.return_type).rsplit(".", 1)[-1].lower()
    return "vector"  # selectors, aggregations, binary operations


def _names(expr: promql_parser.Expr) -> tuple[set[str], set[str]]:
    """Function and aggregation names used anywhere in the expression."""
    funcs: set[str] = set()
    aggs: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.Call):
            funcs.add(node.func.name)
            stack.extend(node.args)
        elif isinstance(node, promql_parser.AggregateExpr):
            aggs.add(str(node.op).lower())
            stack.extend(x for x in (node.expr, node.param) if x is not None)
        elif isinstance(node, promql_parser.BinaryExpr):
            stack.extend((node.lhs, node.rhs))
        elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr
                        | promql_parser.SubqueryExpr):
            stack.append(node.expr)
        elif isinstance(node, promql_parser.MatrixSelector):
            stack.append(node.vector_selector)
    return funcs, aggs


def check_alert_expr(expr: str) -> str:
    """``expr`` if it parses as PromQL that an alerting rule can evaluate; else ValueError."""
    if not expr.strip():
        raise ValueError("empty: write the PromQL whose result fires the alert")
    try:
        tree = promql_parser.parse(expr)
    except ValueError as err:
        raise ValueError(f"not valid PromQL: {err}") from None
    kind = _result_type(tree)
    if kind == "matrix":
        raise ValueError("not valid for an alert: it evaluates to a range vector; wrap it in a "
                         "function such as rate(...) or max_over_time(...)")
    if kind == "string":
        raise ValueError("not valid for an alert: it evaluates to a string")
    funcs, aggs = _names(tree)
    newer = sorted(funcs & NEWER_FUNCTIONS) + sorted(aggs & NEWER_AGGREGATIONS)
    if newer:
        raise ValueError(f"{', '.join(newer)}: not in Prometheus 2.42, which canary-guard targets")
    return expr
