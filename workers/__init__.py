"""The Celery fleet: the app, its image and reminder tasks, the dead-letter queue, telemetry."""
