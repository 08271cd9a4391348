"""Prometheus text rendering of replication status."""
from __future__ import annotations

from sqld.replication import metrics as rmetrics
from sqld.v1 import replication_pb2 as pb


def test_replication_metrics_text():
    status = pb.StatusResponse(logs=[pb.LogStatus(database="main", head_frame_no=42, replicas=[
        pb.ReplicaStatus(replica_id="r1", sent_frame_no=42, written_frame_no=40, applied_frame_no=38,
                         lag_frames=4, replay_lag_seconds=0.25, connected=True)])])
    text = rmetrics.text(status)
    assert 'sqld_replication_head_frame{db="main"} 42' in text
    assert 'sqld_replication_replica_written_frame{db="main",replica="r1"} 40' in text
    assert 'sqld_replication_replica_applied_frame{db="main",replica="r1"} 38' in text
    assert 'sqld_replication_replica_lag_seconds{db="main",replica="r1"} 0.25' in text
    assert "# TYPE sqld_replication_replica_lag_frames gauge" in text
    assert text.endswith("\n")
