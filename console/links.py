"""Every link between console pages, in one place: a page's filters travel in its URL, so a
link pasted into a ticket opens the same view. Pages read the same names back with
`filters_from_url`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from html import escape
from urllib.parse import urlencode

from celery import states as celery_states

from exporters.history.queries import to_epoch
from fleetops.apps import check_app_name

# Query parameter names, shared by the pages that write and read them.
TASK_ID = "task_id"
QUEUE = "queue"
WORKER = "worker"
NAME = "name"
STATE = "state"
EXCEPTION = "exception"
SINCE = "since"
UNTIL = "until"
EXCEPTION_TEXT = "exception_text"
TEXT = "text"
RUNBOOK = "runbook"
TASK_FILTERS = (NAME, STATE, WORKER, QUEUE, SINCE, UNTIL, EXCEPTION, EXCEPTION_TEXT, TEXT)
# The chosen app (console/apps.py): every link keeps it, so no page falls back to all apps.
APP = "app"

# Set by every page run (ui.page) for the links it builds; a script run is one thread, so
# sessions do not see each other's app.
_app: ContextVar[str | None] = ContextVar("fleetops_console_app", default=None)


def keep_app(app: str | None) -> None:
    """Every link built from now on in this page run carries ``app`` (None: all apps)."""
    _app.set(app)


def kept_app() -> str | None:
    return _app.get()


def keeping_app(params: Mapping[str, str]) -> dict[str, str]:
    """``params`` plus the chosen app: for a page that rewrites its whole URL."""
    app = _app.get()
    return {**params, APP: app} if app is not None else dict(params)


@contextlib.contextmanager
def app_of(app: str | None) -> Iterator[None]:
    """Links built inside carry ``app`` instead (an alert's own app); None keeps the page's."""
    if app is None:
        yield
        return
    token = _app.set(app)
    try:
        yield
    finally:
        _app.reset(token)


def _url(page: str, **params: object) -> str:
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    if _app.get() is not None and APP not in kept:
        kept[APP] = str(_app.get())
    # "@" and ":" stay readable (worker hostnames, times); everything else that could end a
    # parameter is escaped.
    return f"/{page}?{urlencode(kept, safe='@:')}" if kept else f"/{page}"


def _known_filters(filters: Mapping[str, object]) -> None:
    unknown = set(filters) - set(TASK_FILTERS)
    if unknown:
        raise ValueError(f"no task filter named {sorted(unknown)}")


def tasks(**filters: object) -> str:
    """The Tasks page searching with these filters (names from TASK_FILTERS)."""
    _known_filters(filters)
    return _url("tasks", **filters)


def task(task_id: str, **search: object) -> str:
    """One task's detail; ``search`` (TASK_FILTERS) keeps the search it was found by, so the
    detail can link back to it."""
    _known_filters(search)
    return _url("tasks", **search, **{TASK_ID: task_id})


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


def task_faults() -> str:
    """The Stuck & orphaned page: orphaned, stuck and twice-run tasks, the visibility trap."""
    return _url("task_faults")


# The alerts whose tasks the Stuck & orphaned page lists (alerts group "celery-tasks").
TASK_FAULT_ALERTS = frozenset(
    {
        "CeleryTaskOrphaned",
        "CeleryTaskLost",
        "CeleryTaskStuck",
        "CeleryTaskRanTwice",
        "CeleryTaskEtaBeyondVisibilityTimeout",
        "CeleryTaskRuntimeNearVisibilityTimeout",
    }
)
TASK_FAULTS_TEXT = "stuck & orphaned tasks"


def alert_targets(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(text, url) of the pages an alert points at: its runbook, the page listing its tasks
    (a task-fault alert), then its queue or worker, in the alert's own app when it names one."""
    app = labels.get(APP) or None
    if app is not None and not _usable_app(app):
        app = None
    with app_of(app):
        return _alert_targets(labels)


def _usable_app(app: str) -> bool:
    try:
        check_app_name(app)
    except ValueError:
        return False
    return True


def _alert_targets(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    found = [("runbook", runbook(labels["alertname"]))] if labels.get("alertname") else []
    if labels.get("alertname") in TASK_FAULT_ALERTS:
        found.append((TASK_FAULTS_TEXT, task_faults()))
    if labels.get("queue_name"):
        found.append((f"queue {labels['queue_name']}", queue(labels["queue_name"])))
    if labels.get("hostname"):
        found.append((f"worker {labels['hostname']}", worker(labels["hostname"])))
    return found


def anchor(text: str, url: str) -> str:
    """An HTML link that opens in the same tab (Streamlit opens Markdown links in a new one,
    which breaks the browser's back button); render with ``unsafe_allow_html=True``. Text and
    URL are escaped, so hostile names stay text."""
    # Markdown still reads the text between HTML tags: its markup characters become entities.
    shown = "".join(f"&#{ord(ch)};" if ch in "*_`[]|\\~#" else ch for ch in escape(text))
    return f'<a href="{escape(url)}" target="_self">{shown}</a>'


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


# Longest value a URL parameter may carry: the history's name, queue, worker and id columns are
# 255 characters, so anything longer cannot match and is refused before a query is made.
MAX_PARAM_CHARS = 255
# Celery's states and the history's REJECTED (a task-rejected event).
TASK_STATES = frozenset(celery_states.ALL_STATES | {"REJECTED"})


def problem_with(name: str, value: str) -> str | None:
    """Why a URL parameter's value cannot be used, in words for the page; None when it can."""
    if len(value) > MAX_PARAM_CHARS:
        return (
            f"The {name!r} in the link is {len(value):,} characters long "
            f"(at most {MAX_PARAM_CHARS})."
        )
    if any(ord(ch) < 32 or ch in "\x7f\ufffd" for ch in value):
        return f"The {name!r} in the link holds control characters or broken encoding."
    if name in (SINCE, UNTIL):
        try:
            to_epoch(value)
        except ValueError as exc:
            return f"The {name!r} in the link: {exc}."
    if name == STATE and value.upper() not in TASK_STATES:
        known = ", ".join(sorted(TASK_STATES))
        return f"The state {value!r} in the link is not a Celery state ({known})."
    return None


def checked(query_params: object, names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """The usable parameters of a URL and a message for each one left out."""
    usable: dict[str, str] = {}
    problems: list[str] = []
    for name, value in filters_from_url(query_params, names).items():
        problem = problem_with(name, value)
        if problem:
            problems.append(problem)
        else:
            usable[name] = value.upper() if name == STATE else value
    return usable, problems
