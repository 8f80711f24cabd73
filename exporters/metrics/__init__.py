"""The Prometheus exporter: event stream + broker polls -> in-memory state -> ``/metrics``.

Threads, each with one job, handing over through bounded structures:
stream reader -> BatchQueue -> applier (owns ``FleetState``) ; broker poller -> QueueSnapshot ;
HTTP server renders ``FleetState`` + the latest snapshot under the state lock.
"""
