"""sqld_replication_* metrics: counters of what was appended and sent, and gauges read from the
service's status (the log head, each replica's sent, written and applied frames and lag) at each scrape."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sqld.v1 import replication_pb2 as pb

TRANSACTIONS_APPENDED = Counter("sqld_replication_transactions_appended_total",
                                "committed transactions appended to the logs", ["db"])
FRAMES_APPENDED = Counter("sqld_replication_frames_appended_total", "WAL frames appended to the logs", ["db"])
BYTES_APPENDED = Counter("sqld_replication_bytes_appended_total", "page bytes appended to the logs", ["db"])
FRAMES_SENT = Counter("sqld_replication_frames_sent_total", "WAL frames sent to replicas", ["db"])
BYTES_SENT = Counter("sqld_replication_bytes_sent_total", "page bytes sent to replicas", ["db"])

_REPLICA_GAUGES = {
    "sqld_replication_replica_sent_frame": ("last frame number sent to the replica", "sent_frame_no"),
    "sqld_replication_replica_written_frame": ("last frame number the replica reported written", "written_frame_no"),
    "sqld_replication_replica_applied_frame": ("last frame number the replica reported applied", "applied_frame_no"),
    "sqld_replication_replica_lag_frames": ("frames the replica has not applied yet", "lag_frames"),
    "sqld_replication_replica_lag_seconds": ("age of the oldest commit the replica has not applied", "replay_lag_seconds"),
    "sqld_replication_replica_connected": ("1 while the replica has a frame stream open", "connected"),
}


def count(db: str, transactions: list[pb.Transaction], counters: tuple[Counter, Counter]) -> None:
    """Add the frames and page bytes of `transactions` to (frames, bytes) counters."""
    frames = sum(len(t.frames) for t in transactions)
    if frames:
        counters[0].labels(db).inc(frames)
        counters[1].labels(db).inc(sum(len(f.page) for t in transactions for f in t.frames))


class StatusCollector(Collector):
    """The gauges of `status()` (ReplicationCore.status), read when Prometheus scrapes."""

    def __init__(self, status: Callable[[], pb.StatusResponse]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._status()
        head = GaugeMetricFamily("sqld_replication_head_frame", "last frame number in the database's log", labels=["db"])
        replica = {name: GaugeMetricFamily(name, help_text, labels=["db", "replica"])
                   for name, (help_text, _) in _REPLICA_GAUGES.items()}
        for lg in status.logs:
            head.add_metric([lg.database], lg.head_frame_no)
            for r in lg.replicas:
                for name, (_, field) in _REPLICA_GAUGES.items():
                    replica[name].add_metric([lg.database, r.replica_id], float(getattr(r, field)))
        yield head
        yield from replica.values()


def text(status: pb.StatusResponse) -> str:
    """The status gauges alone in the text format (tests)."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: status))
    return generate_latest(registry).decode()
