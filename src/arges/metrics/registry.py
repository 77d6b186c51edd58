"""Every metric Arges exports, in one registry per plane, with the hooks that record them.

Names follow Prometheus' conventions: the ``arges_`` prefix, the unit in the name
(``_seconds``, ``_bytes``), ``_total`` on counters. Label values come from small fixed sets
(verbs, decisions, controller names, resources the API server serves), never from request
input, and never carry a secret.

The components that record take a :class:`Metrics` from the plane; built without one (unit
tests), they get a registry of their own that nobody scrapes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from arges.metrics.boots import BootLog, BootRecord

SERVER_STATES = ("discovered", "accepted", "clean", "allocated", "powered", "cordoned")
"""The states ``arges_servers`` counts; one server is counted in each that holds for it."""

FIRMWARES = {"pcbios": "bios", "efi": "uefi"}
"""iPXE's ``${platform}`` to the firmware label of ``arges_boot_requests_total``."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
POWER_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

Body = Mapping[str, Any]


def server_states(body: Body) -> list[str]:
    """The states of ``SERVER_STATES`` that hold for one Server object."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    held = {
        "discovered": True,
        "accepted": bool(spec.get("accepted")),
        "clean": bool(status.get("isClean")),
        "allocated": bool(status.get("inUse")),
        "powered": status.get("power") == "on",
        "cordoned": bool(spec.get("cordoned")),
    }
    return [state for state in SERVER_STATES if held[state]]


class _StateCollector(Collector):
    """Gauges computed at scrape time from what the plane already holds in memory."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        servers = GaugeMetricFamily(
            "arges_servers",
            "Servers in each state (a server counts in every state that holds for it; "
            "discovered counts them all).",
            labels=["state"],
        )
        counts = dict.fromkeys(SERVER_STATES, 0)
        for body in self.metrics.servers():
            for state in server_states(body):
                counts[state] += 1
        for state, count in counts.items():
            servers.add_metric([state], count)
        yield servers
        depth = GaugeMetricFamily(
            "arges_workqueue_depth",
            "Keys waiting in each controller's work queue (not counting delayed retries).",
            labels=["controller"],
        )
        for controller, value in sorted(self.metrics.queues().items()):
            depth.add_metric([controller], value)
        yield depth

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering without collecting: the sources may not be set yet.
        yield GaugeMetricFamily("arges_servers", "", labels=["state"])
        yield GaugeMetricFamily("arges_workqueue_depth", "", labels=["controller"])


class Metrics:
    """One plane's registry and its metrics (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.servers: Callable[[], Iterable[Body]] = lambda: ()
        """Where ``arges_servers`` reads the Servers (the controllers' cache)."""
        self.queues: Callable[[], Mapping[str, int]] = dict
        """Where ``arges_workqueue_depth`` reads each controller's queue depth."""
        reg.register(_StateCollector(self))
        self.boots = BootLog()
        self.boot_requests = Counter(
            "arges_boot_requests",
            "Network boot decisions served at /ipxe, by decision and firmware.",
            ["decision", "firmware"],
            registry=reg,
        )
        self.boot_refusals = Counter(
            "arges_boot_refusals",
            "Requests on the boot port refused, by endpoint (/ipxe, /configdata, the agent's) "
            "and answer (403: credential or requester refused; 429: over the client's rate).",
            ["endpoint", "answer"],
            registry=reg,
        )
        self.dhcp_replies = Counter(
            "arges_dhcp_replies",
            "DHCP replies sent, by mode (proxy or full) and type (offer, ack, nak).",
            ["mode", "type"],
            registry=reg,
        )
        self.tftp_transfers = Counter(
            "arges_tftp_transfers",
            "TFTP transfers, by result (complete, aborted, timeout, refused).",
            ["result"],
            registry=reg,
        )
        self.tftp_retransmissions = Counter(
            "arges_tftp_retransmissions",
            "TFTP packets sent again after the client did not acknowledge them in time.",
            registry=reg,
        )
        self.tftp_sent_bytes = Counter(
            "arges_tftp_sent_bytes", "Bytes of files sent over TFTP.", registry=reg
        )
        self.asset_bytes = Counter(
            "arges_http_asset_bytes",
            "Bytes of boot assets the boot HTTP port answered with, by kind (kernel, initrd, "
            "tftp, iso).",
            ["asset"],
            registry=reg,
        )
        self.power_operations = Histogram(
            "arges_power_operation_duration_seconds",
            "Power actions sent to BMCs and read back, by driver, action and result (ok, or "
            "the error: BmcUnreachable, AuthenticationFailed, PowerTimeout, ...); _count "
            "counts operations.",
            ["driver", "action", "result"],
            buckets=POWER_BUCKETS,
            registry=reg,
        )
        self.reconciles = Counter(
            "arges_reconcile",
            "Reconciles per controller, by result (success, error).",
            ["controller", "result"],
            registry=reg,
        )
        self.reconcile_errors = Counter(
            "arges_reconcile_errors",
            "Reconciles that failed and will be retried, per controller.",
            ["controller"],
            registry=reg,
        )
        self.reconcile_duration = Histogram(
            "arges_reconcile_duration_seconds",
            "Time per reconcile, per controller.",
            ["controller"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.api_requests = Counter(
            "arges_apiserver_requests",
            "Requests to the embedded API server, by verb, resource and HTTP code.",
            ["verb", "group", "resource", "code"],
            registry=reg,
        )
        self.api_latency = Histogram(
            "arges_apiserver_request_duration_seconds",
            "Time to answer API requests, by verb and resource (watches excluded: they last).",
            ["verb", "group", "resource"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.api_watches = Gauge(
            "arges_apiserver_watches",
            "Watches open on the embedded API server, by resource.",
            ["group", "resource"],
            registry=reg,
        )

    def boot_request(
        self, uuid: str, mac: str, client: str, platform: str, decision: str, reason: str
    ) -> None:
        """Count and remember one /ipxe answer: ``decision`` (agent, target, disk,
        not-ready, unavailable) for firmware ``platform`` as iPXE names it (pcbios, efi)."""
        firmware = FIRMWARES.get(platform, "unknown")
        self.boot_requests.labels(decision, firmware).inc()
        now = dt.datetime.now(dt.UTC)
        self.boots.add(BootRecord(now, uuid, mac, client, firmware, decision, reason))

    def dhcp_reply(self, mode: str, kind: str) -> None:
        """Count one DHCP reply of ``kind`` (offer, ack, nak) in ``mode`` (proxy, full)."""
        self.dhcp_replies.labels(mode, kind).inc()

    @contextlib.contextmanager
    def power_operation(self, driver: str, action: str) -> Iterator[None]:
        """Time one power action; its result is ``ok`` or the name of the error raised."""
        started = time.monotonic()
        result = "ok"
        try:
            yield
        except Exception as exc:
            result = type(exc).__name__
            raise
        finally:
            self.power_operations.labels(driver, action, result).observe(time.monotonic() - started)

    def reconciled(self, controller: str, seconds: float, *, failed: bool) -> None:
        """Record one reconcile of ``controller`` that took ``seconds``."""
        self.reconciles.labels(controller, "error" if failed else "success").inc()
        if failed:
            self.reconcile_errors.labels(controller).inc()
        self.reconcile_duration.labels(controller).observe(seconds)
