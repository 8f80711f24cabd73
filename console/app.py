"""The console's entry point: ``streamlit run console/app.py`` (``fleetops console`` does it)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="fleetops console", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "page_overview.py", title="Overview", default=True),
        st.Page(PAGES / "page_queues.py", title="Queues", url_path="queues"),
        st.Page(PAGES / "page_workers.py", title="Workers", url_path="workers"),
        st.Page(PAGES / "page_tasks.py", title="Tasks", url_path="tasks"),
        st.Page(PAGES / "page_workflow.py", title="Workflow", url_path="workflow"),
        st.Page(PAGES / "page_failures.py", title="Failures", url_path="failures"),
        st.Page(PAGES / "page_task_faults.py", title="Stuck & orphaned", url_path="task_faults"),
        st.Page(PAGES / "page_dead_letters.py", title="Dead letters", url_path="dead_letters"),
        st.Page(PAGES / "page_beat.py", title="Beat", url_path="beat"),
        st.Page(PAGES / "page_alerts.py", title="Alerts", url_path="alerts"),
        st.Page(PAGES / "page_runbooks.py", title="Runbooks", url_path="runbooks"),
    ]
)
navigation.run()
