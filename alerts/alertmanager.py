"""Alertmanager configuration: who hears about which alert, and which alert silences which.

critical -> the pager (PagerDuty Events v2 when a routing key file is given, and a webhook);
warning -> the ticket/chat webhook; the watchdog -> its own receiver (a dead man's switch);
info and none -> nowhere.
"""

from __future__ import annotations

from alerts.config import AlertsConfig
from fleetops.apps import APP_LABEL

PAGER = "pager"
TICKET = "ticket"
WATCHDOG = "watchdog"
BLACKHOLE = "blackhole"
WATCHDOG_ALERT = "FleetopsWatchdog"

# One notification per alert and app (fleetops/apps.py): two apps never share a page, and a
# queue or worker of one app never inhibits the same-named one of another. An alert without
# the label (an exporter older than it) groups and inhibits as before.
GROUP_BY = ["alertname", APP_LABEL, "queue_name", "hostname"]

# The broker being unreachable explains these symptoms; page for the cause only.
BROKER_SYMPTOMS = [
    "CeleryWorkerDown",
    "CeleryQueueNoConsumer",
    "FleetopsEventsStopped",
    "FleetopsTaskEventsMissing",
]

# An exporter whose event reader or applier is stalled freezes every event-fed series: events
# stop and every worker's heartbeat ages past its timeout. FleetopsExporterStalled names the
# cause (and pages minutes earlier); these are its symptoms. A stalled poller stops neither.
STALLED_EXPORTER_PARTS = ["reader", "applier"]
STALLED_EXPORTER_SYMPTOMS = ["CeleryWorkerDown", "FleetopsEventsStopped"]
HISTORY_BROKER_DOWN = "FleetopsHistoryBrokerDown"


def inhibit_rules() -> list[dict]:
    lower = 'severity=~"warning|info"'
    return [
        # A page about a queue makes every ticket about the same queue redundant.
        {
            "source_matchers": ['severity="critical"', 'queue_name=~".+"'],
            "target_matchers": [lower, 'queue_name=~".+"'],
            "equal": [APP_LABEL, "queue_name"],
        },
        # Likewise for a worker.
        {
            "source_matchers": ['severity="critical"', 'hostname=~".+"'],
            "target_matchers": [lower, 'hostname=~".+"'],
            "equal": [APP_LABEL, "hostname"],
        },
        # Same alert at two severities (the error-budget burn pairs, fleet-wide alerts).
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": [lower],
            "equal": ["alertname", APP_LABEL, "queue_name", "hostname"],
        },
        # The breaking point outranks the critical level of the same signal (both page).
        {
            "source_matchers": ['level="breaking"'],
            "target_matchers": ['level=~"warning|critical"'],
            "equal": ["signal", APP_LABEL, "queue_name", "hostname"],
        },
        {
            "source_matchers": ['alertname="FleetopsBrokerDown"'],
            "target_matchers": [f'alertname=~"{"|".join(BROKER_SYMPTOMS)}"'],
            # Each app has its own broker: its outage explains that app's symptoms only.
            "equal": [APP_LABEL, "job"],
        },
        # The recorder follows the same broker: the exporter's FleetopsBrokerDown is the cause
        # of the recorder's lost stream of that app (another job, so compared on the app only).
        {
            "source_matchers": ['alertname="FleetopsBrokerDown"'],
            "target_matchers": [f'alertname="{HISTORY_BROKER_DOWN}"'],
            "equal": [APP_LABEL],
        },
        {
            "source_matchers": [
                'alertname="FleetopsExporterStalled"',
                f'part=~"{"|".join(STALLED_EXPORTER_PARTS)}"',
            ],
            "target_matchers": [f'alertname=~"{"|".join(STALLED_EXPORTER_SYMPTOMS)}"'],
            "equal": ["job", "instance"],
        },
    ]


def render(
    *,
    pager_url: str,
    ticket_url: str,
    watchdog_url: str,
    pagerduty_routing_key_file: str,
    group_wait: str,
    group_interval: str,
    repeat_interval: str,
    pager_webhook_token_file: str = "",
) -> dict:
    pager: dict = {"name": PAGER}
    if pagerduty_routing_key_file:
        pager["pagerduty_configs"] = [
            {
                # Read at send time: the key never appears in this file or in the process list.
                "routing_key_file": pagerduty_routing_key_file,
                "send_resolved": True,
                "severity": "critical",
                "links": [
                    {
                        "href": "{{ (index .Alerts 0).Annotations.runbook_url }}",
                        "text": "Runbook",
                    },
                    {
                        "href": "{{ (index .Alerts 0).Annotations.dashboard_url }}",
                        "text": "Dashboard",
                    },
                ],
            }
        ]
    webhook: dict = {"url": pager_url, "send_resolved": True}
    if pager_webhook_token_file:
        # Alertmanager 0.25 has no url_file: a secret travels as a bearer token read from a file.
        webhook["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": pager_webhook_token_file}
        }
    pager["webhook_configs"] = [webhook]
    return {
        "route": {
            "receiver": TICKET,
            "group_by": GROUP_BY,
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": [
                {
                    "receiver": WATCHDOG,
                    "matchers": [f'alertname="{WATCHDOG_ALERT}"'],
                    # A dead man's switch wants a steady beat, not a grouped digest.
                    "group_wait": "0s",
                    "group_interval": "1m",
                    "repeat_interval": "5m",
                },
                {"receiver": PAGER, "matchers": ['severity="critical"']},
                {"receiver": TICKET, "matchers": ['severity="warning"']},
                {"receiver": BLACKHOLE, "matchers": ['severity=~"info|none"']},
            ],
        },
        "inhibit_rules": inhibit_rules(),
        "receivers": [
            pager,
            {"name": TICKET, "webhook_configs": [{"url": ticket_url, "send_resolved": True}]},
            {
                "name": WATCHDOG,
                "webhook_configs": [{"url": watchdog_url, "send_resolved": False}],
            },
            {"name": BLACKHOLE},
        ],
    }


def reference_config(config: AlertsConfig) -> dict:
    section = config.alertmanager
    return render(
        pager_url=section.pager_webhook_url,
        ticket_url=section.ticket_webhook_url,
        watchdog_url=section.watchdog_webhook_url,
        pagerduty_routing_key_file=section.pagerduty_routing_key_file,
        group_wait=section.group_wait,
        group_interval=section.group_interval,
        repeat_interval=section.repeat_interval,
        pager_webhook_token_file=section.pager_webhook_token_file,
    )
