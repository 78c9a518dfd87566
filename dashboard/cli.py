"""``canary-guard dashboard render [--plan FILE] --out DIR``: the Grafana dashboard and provisioning."""

from __future__ import annotations

import argparse
from pathlib import Path

from canary_guard.cli import add_plan_argument, plan_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dashboard_command", metavar="ACTION", required=True)
    render = sub.add_parser(
        "render", help="write the dashboard JSON and Grafana provisioning files",
        description="Write DIR/canary-guard-dashboard.json, DIR/provisioning/datasources/"
                    "canary-guard.yaml and DIR/provisioning/dashboards/canary-guard.yaml.",
    )
    add_plan_argument(render)
    render.add_argument("--out", metavar="DIR", required=True, help="output directory")
    render.add_argument("--demo", action="store_true",
                        help="apply the plan's demo settings (windows match `canary-guard demo`)")
    render.add_argument("--prometheus-url", metavar="URL", default=None,
                        help="the provisioned datasource's URL (default http://prometheus:9090)")
    render.add_argument("--dashboards-path", metavar="PATH", default=None,
                        help="where Grafana finds the JSON "
                             "(default /var/lib/grafana/dashboards/canary-guard)")


def run(args: argparse.Namespace) -> int:
    from . import render as r

    plan = plan_from_args(args)
    if args.demo:
        plan = plan.with_demo_settings()
    written = r.render(
        plan, Path(args.out),
        prometheus_url=args.prometheus_url or r.DEFAULT_PROMETHEUS_URL,
        dashboards_path=args.dashboards_path or r.DEFAULT_DASHBOARDS_PATH,
    )
    for path in written:
        print(path)
    return 0
