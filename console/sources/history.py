"""Task history from the SQL store, through the store's own query API (never SQL of ours)."""

from __future__ import annotations

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


def call(engine: Engine, query: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run one of exporters.history.queries, turning a database failure into SourceDown."""
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
