"""sqld_replication_* metrics: the log head and each replica's sent, written and applied frames and lag."""
from __future__ import annotations

from sqld.common import metrics
from sqld.v1 import replication_pb2 as pb

HELP = {
    "sqld_replication_head_frame": "last frame number in the database's log",
    "sqld_replication_replica_sent_frame": "last frame number sent to the replica",
    "sqld_replication_replica_written_frame": "last frame number the replica reported written",
    "sqld_replication_replica_applied_frame": "last frame number the replica reported applied",
    "sqld_replication_replica_lag_frames": "frames the replica has not applied yet",
    "sqld_replication_replica_lag_seconds": "age of the oldest commit the replica has not applied",
    "sqld_replication_replica_connected": "1 while the replica has a frame stream open",
}


def text(status: pb.StatusResponse) -> str:
    samples: list[metrics.Sample] = []
    for lg in status.logs:
        samples.append(("sqld_replication_head_frame", {"db": lg.database}, lg.head_frame_no))
        for r in lg.replicas:
            labels = {"db": lg.database, "replica": r.replica_id}
            samples += [
                ("sqld_replication_replica_sent_frame", labels, r.sent_frame_no),
                ("sqld_replication_replica_written_frame", labels, r.written_frame_no),
                ("sqld_replication_replica_applied_frame", labels, r.applied_frame_no),
                ("sqld_replication_replica_lag_frames", labels, r.lag_frames),
                ("sqld_replication_replica_lag_seconds", labels, r.replay_lag_seconds),
                ("sqld_replication_replica_connected", labels, 1 if r.connected else 0),
            ]
    return metrics.render(samples, HELP)
