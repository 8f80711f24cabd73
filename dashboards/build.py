"""Build every dashboard through the SDK and write (or compare) the committed JSON."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from dashboards import exporter, flower, overview, queue, task, worker
from dashboards.base import BuildOptions

GENERATED_DIR = Path(__file__).with_name("generated")

Builder = Callable[[BuildOptions], models.Dashboard]

# File name (without .json) -> builder, in the order the dashboards are read.
BUILDERS: dict[str, Builder] = {
    "overview": overview.build,
    "queue": queue.build,
    "worker": worker.build,
    "task": task.build,
    "flower": flower.build,
    "exporter": exporter.build,
}


def build_all(options: BuildOptions | None = None) -> dict[str, models.Dashboard]:
    options = options or BuildOptions()
    return {name: builder(options) for name, builder in BUILDERS.items()}


def render(dashboard: models.Dashboard) -> str:
    """Stable JSON: sorted keys, so a regenerated file differs only where the dashboard does."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def render_all(options: BuildOptions | None = None) -> dict[str, str]:
    return {f"{name}.json": render(model) for name, model in build_all(options).items()}


@dataclass(frozen=True)
class Difference:
    file: Path
    diff: str  # unified diff, or a sentence for missing / unexpected files


def write(directory: Path = GENERATED_DIR, options: BuildOptions | None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in render_all(options).items():
        path = directory / file_name
        path.write_text(text)
        written.append(path)
    return written


def compare(
    directory: Path = GENERATED_DIR, options: BuildOptions | None = None
) -> list[Difference]:
    """Differences between what the builders produce and what is committed in ``directory``."""
    expected = render_all(options)
    differences = []
    for file_name, text in expected.items():
        path = directory / file_name
        if not path.exists():
            differences.append(Difference(path, f"{path} is missing"))
            continue
        committed = path.read_text()
        if committed != text:
            diff = difflib.unified_diff(
                committed.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (built)",
            )
            differences.append(Difference(path, "".join(diff)))
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected:
            differences.append(Difference(path, f"{path} is not built by any dashboard"))
    return differences
