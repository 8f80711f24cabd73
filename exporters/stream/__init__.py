"""The Celery event stream: read it from the broker, decode it, hand it on in bounded batches.

Data flow: a reader (``redis_reader`` straight from Redis pub/sub, or ``kombu_reader`` for any
other transport) -> ``BatchQueue`` (bounded, counts what it had to drop) -> a consumer that
decodes with ``envelope.decode`` and applies the events.
"""
