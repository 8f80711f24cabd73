"""Stable, readable YAML: keys in the order given, multi-line PromQL as literal blocks."""

from __future__ import annotations

import yaml


class _Dumper(yaml.SafeDumper):
    # Indent list items under their key, as promtool, amtool and most hand-written files do.
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(data: object, header: str = "") -> str:
    body = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096,
        allow_unicode=True,
    )  # fmt: skip
    return header + body
