"""The queue poller for one app's broker: Redis read directly, RabbitMQ through its management
API (AMQP as the fallback), any other kombu transport through a passive ``queue_declare``."""

from __future__ import annotations

from exporters.metrics.amqp_poller import KombuPoller
from exporters.metrics.rabbitmq_management import RabbitMQPoller
from exporters.metrics.redis_poller import RedisPoller
from exporters.metrics.settings import ExporterSettings
from exporters.stream.consumer import is_redis_url
from fleetops.apps import DEFAULT_APP
from fleetops.settings import url_scheme

RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")

Poller = RedisPoller | RabbitMQPoller | KombuPoller


def is_rabbitmq_url(url: str) -> bool:
    return url_scheme(url.strip()) in RABBITMQ_SCHEMES


def broker_poller(url: str, settings: ExporterSettings, app: str = DEFAULT_APP) -> Poller:
    dlq = settings.exporter_dead_letter_queue
    if is_redis_url(url):
        return RedisPoller(url, dead_letter_queue=dlq, max_queues=settings.exporter_max_queues)
    if is_rabbitmq_url(url):
        return RabbitMQPoller(
            url,
            dead_letter_queue=dlq,
            management_url=settings.rabbitmq_management_url(app),
            timeout=settings.exporter_rabbitmq_management_timeout,
            max_queues=settings.exporter_max_queues,
        )
    return KombuPoller(url, dlq)
