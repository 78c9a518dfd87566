"""Durations exactly as Prometheus parses them, checked against promtool itself."""

from __future__ import annotations

import random
import subprocess

import pytest
import yaml
from conftest import need_binary

from canary_guard.durations import format_duration, parse_duration, parse_seconds_or_duration
from canary_guard.plan import PlanError, default_plan_path, parse_plan


@pytest.mark.parametrize("text,seconds", [
    ("15s", 15), ("5m", 300), ("1h30m", 5400), ("800ms", 0.8), ("0", 0), ("0s", 0), ("01m", 60),
    ("1m0s", 60), ("1h1ms", 3600.001), ("1y1w1d1h1m1s1ms", 32230861.001), ("2w", 1209600),
    ("292y", 292 * 31536000), ("9223372036854ms", 9223372036.854),
    (2, 2.0), (0.5, 0.5),  # plain numbers are seconds: Plan.to_yaml writes them
])
def test_what_prometheus_accepts(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text,why", [
    ("1.5m", "Prometheus takes whole numbers only; write 1m30s"),
    ("5s1m", "units go from the largest to the smallest; write 1m5s"),
    ("1m1m", "each unit may appear once; write 2m"),
    ("1ms1s", "units go from the largest to the smallest; write 1s1ms"),
    ("5", "every number needs a unit (15s, not 15)"),
    ("1h30", "every number needs a unit"),
    ("1M", "unknown unit 'M'"),
    (" 1m", "remove the spaces around it"),
    ("-1m", "must not be negative"),
    ("293y", "out of range"),
    ("9223372036855ms", "out of range"),
    ("", "must be a duration such as 30s, 5m or 1h30m"),
    ("soon", "is not a duration such as 30s, 5m or 1h30m"),
    (float("nan"), "finite"),
    (-1, "must not be negative"),
    (True, "must be a duration"),
])
def test_what_prometheus_refuses_and_what_to_write_instead(text, why):
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert why in str(err.value)


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (0.8, "800ms"), (90, "1m30s"), (604800, "1w"),
                                          (90 * 86400, "90d"), (365 * 86400, "1y"),
                                          (5400.5, "1h30m500ms"), (8 * 86400, "8d")])
def test_format_like_prometheus(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_format_round_trips():
    rng = random.Random(15)
    for _ in range(2000):
        ms = rng.choice([rng.randrange(1, 10_000), rng.randrange(1, 10**12)])
        assert parse_duration(format_duration(ms / 1000)) == ms / 1000


def candidates(n: int) -> list[str]:
    """Valid durations and near-misses: one mutation (order, repeat, decimal, unit, spaces, size)."""
    rng = random.Random(42)
    units = ["y", "w", "d", "h", "m", "s", "ms"]
    out = ["0", "", "00", "0.0s", "1h30m", "1.5m", "5s1m", "1m1m", "292y", "293y",
           "9223372036854ms", "9223372036855ms", "106751d", "106752d", "15250w", "15251w"]
    while len(out) < n:
        chosen = sorted(rng.sample(range(len(units)), rng.randint(1, 4)))
        parts = [[str(rng.choice([rng.randint(0, 99), rng.randint(0, 10**6)])), units[i]] for i in chosen]
        mutation = rng.choice(["none", "none", "none", "swap", "repeat", "decimal", "unit", "space",
                               "huge", "zero-pad", "no-unit"])
        if mutation == "swap" and len(parts) > 1:
            parts[0], parts[-1] = parts[-1], parts[0]
        elif mutation == "repeat":
            parts.append(list(rng.choice(parts)))
        elif mutation == "decimal":
            rng.choice(parts)[0] += "." + str(rng.randint(0, 9))
        elif mutation == "unit":
            rng.choice(parts)[1] = rng.choice(["M", "us", "S", "H", "sec", "µs"])
        elif mutation == "space":
            parts.insert(rng.randint(0, len(parts)), [" ", ""])
        elif mutation == "huge":
            rng.choice(parts)[0] = str(rng.randint(10**9, 10**14))
        elif mutation == "zero-pad":
            rng.choice(parts)[0] = "00" + rng.choice(parts)[0]
        elif mutation == "no-unit":
            parts[-1][1] = ""
        out.append("".join(a + b for a, b in parts))
    return out


def test_acceptance_matches_promtool(tmp_path):
    """Each candidate as a rule's `for:` (model.ParseDuration): promtool and we agree on every one."""
    promtool = need_binary("promtool")
    texts = candidates(400)
    files = []
    for i, text in enumerate(texts):
        path = tmp_path / f"c{i}.yml"
        rule = {"alert": "A", "expr": "vector(1)", "for": text}
        path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
        files.append(path.name)
    # one stream: "Checking FILE" goes to stdout, FAILED to stderr, in that order
    out = subprocess.run([promtool, "check", "rules", *files], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    verdict, current = {}, None
    for line in out.stdout.splitlines():
        if line.startswith("Checking "):
            current = line.split()[1]
        elif current and ("SUCCESS" in line or "FAILED" in line):
            verdict[current] = "SUCCESS" in line
            current = None
    assert len(verdict) == len(texts)

    def ours(text: str) -> bool:
        try:
            parse_duration(text)
            return True
        except ValueError:
            return False

    disagree = [(t, verdict[f"c{i}.yml"]) for i, t in enumerate(texts) if ours(t) != verdict[f"c{i}.yml"]]
    assert not disagree
    assert 50 < sum(verdict.values()) < len(texts) - 50  # both sides well represented


def test_the_plan_refuses_what_prometheus_refuses_with_the_field():
    data = yaml.safe_load(default_plan_path().read_text())
    data["triggers"][0]["window"] = "1.5m"
    data["probe"]["interval"] = "5s1m"
    with pytest.raises(PlanError) as err:
        parse_plan(data, "t.yaml")
    assert ("triggers[0].window: '1.5m' is not a duration such as 30s, 5m or 1h30m: Prometheus takes "
            "whole numbers only; write 1m30s") in err.value.problems
    assert any(p.startswith("probe.interval: '5s1m'") for p in err.value.problems)


def test_command_line_flags_take_bare_seconds_or_durations():
    from canary_guard.exporter.cli import seconds
    from canary_guard.gate.cli import duration_arg
    from canary_guard.gate.prom import parse_time
    from canary_guard.webhook.api import parse_since

    for parse in (parse_seconds_or_duration, seconds, duration_arg):
        assert parse("0.5") == 0.5 and parse("15") == 15 and parse("1m30s") == 90 and parse("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_seconds_or_duration("1.5m")
    assert parse_since("10m", now=1000.0) == 400.0
    assert abs(parse_time("now-2h") - (parse_time("now") - 7200)) < 5
