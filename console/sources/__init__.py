"""Where the console's data comes from: one module per source, each failing on its own."""

from __future__ import annotations


class SourceDown(Exception):
    """A source did not answer; pages show this as a banner and render the rest."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source} is unavailable: {detail}")
        self.source = source
        self.detail = detail
