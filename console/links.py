"""Every link between console pages, in one place: a page's filters travel in its URL, so a
link pasted into a ticket opens the same view. Pages read the same names back with
`filters_from_url`."""

from __future__ import annotations

from urllib.parse import urlencode

# Query parameter names, shared by the pages that write and read them.
TASK_ID = "task_id"
QUEUE = "queue"
WORKER = "worker"
NAME = "name"
STATE = "state"
EXCEPTION = "exception"
SINCE = "since"
RUNBOOK = "runbook"
TASK_FILTERS = (NAME, STATE, WORKER, QUEUE, SINCE, EXCEPTION)


def _url(page: str, **params: object) -> str:
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return f"/{page}?{urlencode(kept)}" if kept else f"/{page}"


def tasks(**filters: object) -> str:
    """The Tasks page searching with these filters (names from TASK_FILTERS)."""
    unknown = set(filters) - set(TASK_FILTERS)
    if unknown:
        raise ValueError(f"no task filter named {sorted(unknown)}")
    return _url("tasks", **filters)


def task(task_id: str) -> str:
    return _url("tasks", **{TASK_ID: task_id})


def workflow(task_id: str) -> str:
    """The workflow (canvas) a task belongs to, drawn from its root."""
    return _url("workflow", **{TASK_ID: task_id})


def failures(**filters: object) -> str:
    return _url("failures", **filters)


def queue(name: str) -> str:
    return _url("queues", **{QUEUE: name})


def worker(hostname: str) -> str:
    return _url("workers", **{WORKER: hostname})


def runbook(alert_name: str) -> str:
    return _url("runbooks", **{RUNBOOK: alert_name})


def markdown(text: str, url: str) -> str:
    """A Markdown link whose text cannot break out of the brackets (hostile names)."""
    escaped = "".join("\\" + ch if ch in "[]()\\`*_<>" else ch for ch in text)
    return f"[{escaped}]({url})"


def filters_from_url(query_params: object, names: tuple[str, ...] = TASK_FILTERS) -> dict[str, str]:
    """The filters a URL carries (Streamlit's st.query_params), empty ones left out."""
    found: dict[str, str] = {}
    for name in names:
        value = query_params.get(name)  # type: ignore[attr-defined]
        if value:
            found[name] = str(value)
    return found
