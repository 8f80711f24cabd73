"""Task history that survives restarts: the recorder writes the Celery event stream into SQL
(SQLite by default, PostgreSQL by URL) and ``queries`` reads it back for the console and CLI.

Data flow inside the recorder process::

    source (Celery event receiver) -> SpillingBuffer (memory, then disk) -> HistoryWriter
    (merge a batch, upsert tasks and workers) -> database; a pruner applies retention.
"""
