"""Hostname and exception labels as docs/metrics.md defines them."""

from __future__ import annotations

import re

_GENERATED = re.compile(r"^gen\d+@(.+)$")
_EXCEPTION = re.compile(r"^\s*([\w.]+)\s*(?:\(|:|$)")
_CACHE_LIMIT = 20_000
_hostnames: dict[str, str] = {}


def hostname_label(node: str) -> str:
    """``celery@host`` stays as it is; ``gen123@host`` (a producer's process) becomes ``host``,
    so every short-lived producer process does not make a series of its own."""
    label = _hostnames.get(node)
    if label is None:
        match = _GENERATED.match(node)
        label = match.group(1) if match else node
        if len(_hostnames) >= _CACHE_LIMIT:
            _hostnames.clear()
        _hostnames[node] = label
    return label


def exception_label(text: object) -> str:
    """The class name out of ``ValueError('...')`` or ``pkg.mod.Error: ...``."""
    if not isinstance(text, str):
        return "UnknownException"
    match = _EXCEPTION.match(text)
    if match is None:
        return "UnknownException"
    return match.group(1).rsplit(".", 1)[-1]
