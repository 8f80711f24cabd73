"""A workflow (Celery canvas) as a graph: the DOT text the Workflow page hands to
``st.graphviz_chart``, which lays it out in the browser.

Each task is a node coloured by its state and linking to its detail; an edge goes from a
task to each task it started (its children, by parent_id). A chord's callback is started by
the header task that finished last, so it hangs under that one. Past ``DRAW_MAX`` tasks a
drawing of every task is unreadable and slow to lay out: the graph then has one node per
task name, with how many tasks of each state it holds.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from console import links

DRAW_MAX = 150
# Fill colours by state, readable with black text; unknown states are white.
STATE_COLOURS = {
    "SUCCESS": "#b7e4c7",
    "FAILURE": "#f4a3a3",
    "RETRY": "#ffd59e",
    "STARTED": "#a9d1f7",
    "RECEIVED": "#d6e9fb",
    "PENDING": "#e5e5e5",
    "REVOKED": "#c9c9c9",
    "REJECTED": "#c9c9c9",
}


def _quoted(text: object) -> str:
    """A DOT string literal: a hostile task name cannot end the string or add attributes."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _header() -> list[str]:
    return [
        "digraph workflow {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=10];',
        '  edge [color="#777777"];',
    ]


def dot(frame: pd.DataFrame, root_id: str, focus: str | None = None) -> str:
    """The workflow of ``frame`` (rows of ``queries.workflow``) in DOT: per task when it has
    at most DRAW_MAX tasks, else per task name. ``focus`` (the task the page was opened for)
    is drawn with a thick border."""
    if len(frame) > DRAW_MAX:
        return _by_name(frame, root_id)
    lines = _header()
    ids = set(frame["task_id"])
    for row in frame.to_dict("records"):
        task_id = str(row["task_id"])
        state = str(row.get("state") or "?")
        retries = int(row.get("retries") or 0)
        label = f"{row.get('name') or '?'}\\n{task_id[:8]} {state}"
        if retries:
            label += f"\\nretries {retries}"
        attributes = {
            "label": label,
            "fillcolor": STATE_COLOURS.get(state, "#ffffff"),
            "URL": links.task(task_id),
            "target": "_self",
            "tooltip": f"{row.get('name')} {task_id} {state}",
        }
        if task_id == focus:
            attributes["penwidth"] = "3"
        text = ", ".join(
            f"{key}={_quoted(value) if key != 'label' else _label(value)}"
            for key, value in attributes.items()
        )
        lines.append(f"  {_quoted(task_id)} [{text}];")
    for row in frame.to_dict("records"):
        parent = row.get("parent_id")
        if parent and parent in ids and parent != row["task_id"]:
            lines.append(f"  {_quoted(parent)} -> {_quoted(row['task_id'])};")
    lines.append("}")
    return "\n".join(lines)


def _label(text: str) -> str:
    # Labels keep their "\n" line breaks (DOT escapes); everything else is quoted as usual.
    parts = text.split("\\n")
    return '"' + "\\n".join(_quoted(part)[1:-1] for part in parts) + '"'


def _by_name(frame: pd.DataFrame, root_id: str) -> str:
    names = frame["name"].fillna("?").astype(str)
    name_of = dict(zip(frame["task_id"], names, strict=True))
    states: dict[str, Counter[str]] = defaultdict(Counter)
    for name, state in zip(names, frame["state"].fillna("?"), strict=True):
        states[name][str(state)] += 1
    lines = _header()
    for name, counts in states.items():
        total = sum(counts.values())
        worst = "FAILURE" if counts.get("FAILURE") else counts.most_common(1)[0][0]
        summary = ", ".join(f"{state} {count:,}" for state, count in counts.most_common())
        label = f"{name} ×{total:,}\\n{summary}"
        search = links.tasks(name=name) if name != "?" else links.workflow(root_id)
        lines.append(
            f"  {_quoted(name)} [label={_label(label)}, "
            f"fillcolor={_quoted(STATE_COLOURS.get(worst, '#ffffff'))}, "
            f'URL={_quoted(search)}, target="_self"];'
        )
    edges = {
        (name_of[parent], name)
        for parent, name in zip(frame["parent_id"], names, strict=True)
        if parent in name_of
    }
    for parent_name, name in sorted(edges):
        if parent_name != name:
            lines.append(f"  {_quoted(parent_name)} -> {_quoted(name)};")
    lines.append("}")
    return "\n".join(lines)
