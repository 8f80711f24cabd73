"""Task history from the SQL store, through the store's own query API (never SQL of ours)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from console.sources import SourceDown
from exporters.history import queries
from exporters.history.database import create_history_engine, describe
from exporters.history.settings import RECENT_WINDOW as RECENT_WINDOW

NAME = "Task history database"
T = TypeVar("T")


@cache
def engine_for(url: str) -> Engine:
    # One pool per database for the whole console process, shared by every session.
    return create_history_engine(url)


class NoAppFilter(TypeError):
    """A history query that cannot filter by app was asked for one app's rows."""


def takes_app(query: Callable[..., object]) -> bool:
    """Whether a history query filters by app (a keyword ``app``, exporters/history/queries.py)."""
    try:
        return "app" in inspect.signature(query).parameters
    except (TypeError, ValueError):
        return False


def call(
    engine: Engine,
    query: Callable[..., T],
    *args: object,
    app: str | None = None,
    **kwargs: object,
) -> T:
    """Run one of exporters.history.queries, turning a database failure into SourceDown.

    ``app`` (None: all apps) is passed as the query's keyword ``app``. A query without that
    keyword asked for one app is an error, never a read of every app: the page would show
    other apps' rows under a sidebar naming one (every query of the store takes it)."""
    if app is not None:
        if not takes_app(query):
            name = getattr(query, "__name__", repr(query))
            raise NoAppFilter(f"history query {name} cannot filter by app {app!r}")
        kwargs["app"] = app
    try:
        return query(engine, *args, **kwargs)
    except SQLAlchemyError as exc:
        raise SourceDown(NAME, f"{describe(engine)}: {exc.__class__.__name__}: {exc}") from exc


TaskFilter = queries.TaskFilter
search_tasks = queries.search_tasks
search_page = queries.search_page
count_tasks = queries.count_tasks
COUNT_CAP = queries.COUNT_CAP
task_detail = queries.task_detail
failures = queries.failures
task_names = queries.task_names
to_epoch = queries.to_epoch
workflow = queries.workflow
workflow_root = queries.workflow_root
task_runs = queries.task_runs
runs_of = queries.runs_of
twice_run_tasks = queries.twice_run_tasks
orphaned_tasks = queries.orphaned_tasks
stuck_tasks = queries.stuck_tasks
eta_beyond_visibility = queries.eta_beyond_visibility
