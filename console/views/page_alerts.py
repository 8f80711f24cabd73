"""Alerts: firing and silenced alerts from Alertmanager; create and expire silences."""

from __future__ import annotations

from html import escape

import pandas as pd
import streamlit as st

from console import actions, auth, links, ui
from console.sources.alertmanager import Alert


def alert_line(alert: Alert, said: str) -> str:
    """One alert as a list item: its labels, what it says, then links (same tab) to its runbook
    and to the queue or worker it is about."""
    labels = ", ".join(
        f"{escape(k)}={escape(v)}" for k, v in sorted(alert.labels.items()) if k != "alertname"
    )
    targets = " · ".join(links.anchor(text, url) for text, url in links.alert_targets(alert.labels))
    return f"- **{escape(alert.name)}** {labels}{said} {targets}"


ctx = ui.page("Alerts")
alerts = ui.fetch(ctx.alerts)
if alerts is not None:
    firing = [a for a in alerts if a.state == "active"]
    silenced = [a for a in alerts if a.state == "suppressed"]
    st.subheader(f"Firing ({len(firing)})")
    for alert in firing:
        st.markdown(alert_line(alert, f": {escape(alert.summary or '')}"), unsafe_allow_html=True)
    st.subheader(f"Silenced or inhibited ({len(silenced)})")
    for alert in silenced:
        by = ", ".join(alert.silenced_by) or "inhibition"
        st.markdown(alert_line(alert, f" silenced by {escape(by)}"), unsafe_allow_html=True)

silences = ui.fetch(ctx.alertmanager.silences)
if silences is not None:
    st.subheader("Silences")
    rows = [
        {
            "id": s["id"],
            "state": s["status"]["state"],
            "matchers": ", ".join(f"{m['name']}={m['value']}" for m in s["matchers"]),
            "ends": s["endsAt"],
            "by": s["createdBy"],
            "comment": s["comment"],
        }
        for s in silences
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="silences")

    st.subheader("Create a silence")
    names = sorted({a.name for a in alerts or []})
    alertname = st.selectbox("Alert", names, key="silence_alert") if names else None
    if alertname is None:
        alertname = st.text_input("Alert name", key="silence_alert_name")
    queue = st.text_input("Only for queue_name (optional)", key="silence_queue")
    hours = st.number_input("Hours", 0.25, 72.0, 2.0, key="silence_hours")
    comment = st.text_input("Why", key="silence_comment")
    matchers = {"alertname": alertname or ""}
    if queue:
        matchers["queue_name"] = queue
    if ctx.apps.several and ctx.app is not None:
        # Only the chosen app's alerts; with one app its alerts may predate the app label.
        matchers["app"] = ctx.app
    if alertname:
        actions.guarded(
            ctx.settings,
            app=None,
            key="silence_create",
            label="Create silence",
            what=f"silence {matchers} for {hours:g} h",
            run=lambda: (
                "silence "
                + ctx.alertmanager.create_silence(
                    matchers, hours=hours, author=auth.operator() or "?", comment=comment or "-"
                )
            ),
            details={"matchers": matchers},
        )
    if rows:
        st.subheader("Expire a silence")
        silence_id = st.selectbox("Silence", [row["id"] for row in rows], key="silence_expire_id")
        actions.guarded(
            ctx.settings,
            app=None,
            key="silence_expire",
            label="Expire silence",
            what=f"expire silence {silence_id}",
            run=lambda: ctx.alertmanager.expire_silence(silence_id) or "expired",
            details={"silence_id": silence_id},
        )
