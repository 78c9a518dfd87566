"""Rule specs -> files: one Jinja2 template per output format."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

from canary_guard import __version__
from canary_guard.durations import format_duration
from canary_guard.plan import Plan

from . import alertmanager, promtests, spec

RULES_FILE = "canary-guard.rules.yml"
TESTS_FILE = "canary-guard.rules.test.yml"
PROMETHEUSRULE_FILE = "prometheusrule.yaml"
ALERTMANAGER_FILE = "alertmanager.yml"
FILES = (RULES_FILE, TESTS_FILE, PROMETHEUSRULE_FILE, ALERTMANAGER_FILE)

# the Alertmanager configuration is data (alertmanager.py): these names stay importable here
from .alertmanager import DEFAULT_RECEIVER, GROUP_BY, RECEIVER, acting_actions  # noqa: E402, F401


def _yaml(value, indent: int = 0) -> str:
    """A YAML scalar or flow list; multi-line strings become ``|-`` blocks indented by ``indent``."""
    if isinstance(value, str) and "\n" in value:
        pad = " " * indent
        return "|-\n" + "\n".join(pad + line if line else "" for line in value.split("\n"))
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _duration(seconds: float) -> str:
    return format_duration(seconds)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("canary_guard.rules", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["yaml"] = _yaml
    env.filters["duration"] = _duration
    return env


def render_all(plan: Plan) -> dict[str, str]:
    """File name -> content for every output format."""
    env = environment()
    groups = spec.build_groups(plan)
    ctx = {
        "plan": plan,
        "version": __version__,
        "groups": groups,
        "group_names": [g.name for g in groups],
        "windows": [format_duration(x) for x in spec.windows(plan)],
        "indent": 0,
        "resource_name": f"canary-guard-{plan.name}".replace("_", "-"),
        "tests": promtests.build_tests(plan),
    }
    return {
        RULES_FILE: env.get_template(RULES_FILE + ".j2").render(ctx),
        PROMETHEUSRULE_FILE: env.get_template(PROMETHEUSRULE_FILE + ".j2").render(ctx),
        ALERTMANAGER_FILE: alertmanager.render(plan),
        TESTS_FILE: env.get_template(TESTS_FILE + ".j2").render(ctx),
    }


def render(plan: Plan, out: str | Path) -> list[Path]:
    """Write every file into ``out`` (created if missing); return the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all(plan).items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written
