"""YAML out: every generated file is a data structure dumped here, behind a comment header."""

from __future__ import annotations

import json

import yaml


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # lists indented under their key, as hand-written Prometheus files are
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # multi-line PromQL reads best as a block; the emitter still quotes what a block cannot hold
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def dump(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 30)


def comment(*lines: str) -> str:
    """A YAML comment block; a line holding anything but printable text is written escaped."""
    out = []
    for text in lines:
        for line in text.split("\n"):
            out.append("# " + (line if line.isprintable() else json.dumps(line)[1:-1]))
    return "\n".join(out) + "\n"
