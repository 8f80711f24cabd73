"""The runbooks/ pages, one Markdown file per alert."""

from __future__ import annotations

from pathlib import Path


def names(directory: Path) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.md"))


def read(directory: Path, name: str) -> str | None:
    # Names come from URLs: only a plain file name inside the directory is served.
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = directory / f"{name}.md"
    return path.read_text() if path.is_file() else None
