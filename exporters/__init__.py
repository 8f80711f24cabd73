"""Consumers of the fleet's event stream and broker: the Prometheus exporter (metrics/) and the
task-history recorder (history/), both fed by the event stream reader (stream/)."""
