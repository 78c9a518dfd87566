"""canary-guard: guard a canary rollout with Prometheus.

The shared package: the plan model (``canary_guard.plan``) and the one CLI. The components
(exporter, rules, webhook, sandbox, demo, gate, dashboard) are subpackages that never import
each other.
"""

from .plan import Plan, PlanError, load_plan

__version__ = "0.1.0"
__all__ = ["Plan", "PlanError", "load_plan", "__version__"]
