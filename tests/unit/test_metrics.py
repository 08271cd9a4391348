"""Prometheus metrics through prometheus-client: replication status gauges, escaped labels, kinds."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sqld.edge import metrics as edge_metrics
from sqld.replication import metrics as rmetrics
from sqld.v1 import replication_pb2 as pb


def test_replication_status_gauges_parse_with_escaped_labels():
    status = pb.StatusResponse(logs=[pb.LogStatus(database='we"ird\\db', head_frame_no=42, replicas=[
        pb.ReplicaStatus(replica_id="r1", sent_frame_no=42, written_frame_no=40, applied_frame_no=38,
                         lag_frames=4, replay_lag_seconds=0.25, connected=True)])])
    text = rmetrics.text(status)
    assert 'db="we\\"ird\\\\db"' in text  # the library escapes label values
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["sqld_replication_head_frame"].type == "gauge"
    samples = {(s.name, s.labels.get("replica", "")): s for f in families.values() for s in f.samples}
    assert samples[("sqld_replication_head_frame", "")].labels["db"] == 'we"ird\\db'
    assert samples[("sqld_replication_head_frame", "")].value == 42
    assert samples[("sqld_replication_replica_applied_frame", "r1")].value == 38
    assert samples[("sqld_replication_replica_lag_seconds", "r1")].value == 0.25
    assert samples[("sqld_replication_replica_connected", "r1")].value == 1


def test_statement_kinds():
    assert [edge_metrics.kind(s) for s in ("select 1", " /* c */ INSERT into t values (1)", "update t set a=1",
                                             "delete from t", "create table t (a)", "drop index i", "begin", "")] == [
        "select", "insert", "update", "delete", "ddl", "ddl", "other", "other"]
    assert edge_metrics.batch_kind(["select 1", "select 2"]) == "select"
    assert edge_metrics.batch_kind(["begin", "insert into t values (1)", "commit"]) == "other"
