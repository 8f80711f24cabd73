"""The console's pages, one script each, listed by console/app.py with st.navigation.

The folder is not called ``pages``: Streamlit treats a ``pages/`` folder beside the main script
as an old-style multipage app until st.navigation has run once, so the first deep link a fresh
console served (``/failures?since=7d`` pasted into a ticket) answered "Page not found".
Scripts are named page_* so that none hides a package of the same name (workers, alerts)."""
