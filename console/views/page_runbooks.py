"""Runbooks: the runbooks/ pages rendered; alerts link here with ?runbook=<AlertName>."""

from __future__ import annotations

import streamlit as st

from console import ui
from console.sources import runbooks

ctx = ui.page("Runbooks")
directory = ctx.settings.runbooks_dir
available = runbooks.names(directory)
if not available:
    st.error(f"No runbook found in {directory} (FLEETOPS_RUNBOOKS_DIR).")
    st.stop()
asked = st.query_params.get("runbook", "")
if asked and asked not in available:
    st.warning(f"There is no runbook named {asked!r}; pick one below.")
index = available.index(asked) if asked in available else 0
name = st.selectbox("Runbook", available, index=index, key="runbook")
if name != asked:
    st.query_params["runbook"] = name
st.markdown(runbooks.read(directory, name) or "")
