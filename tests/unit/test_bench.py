"""The pure parts of the benchmark harness (bench/): reading pgbench, tables, targets, profiles."""
from __future__ import annotations

import apsw
import pytest

from bench import analysis, latency, pgbench, profile, report, schema

PGBENCH_OK = """pgbench (15.18 (Debian 15.18-0+deb12u1), server 15.0)
progress: 1.0 s, 801.0 tps, lat 1.246 ms stddev 0.210, 0 failed
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 1
number of threads: 1
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 2462
number of failed transactions: 0 (0.000%)
latency average = 1.218 ms
initial connection time = 1.595 ms
tps = 821.018336 (without initial connection time)
"""

PGBENCH_EXTENDED_FAILS = """pgbench (15.18 (Debian 15.18-0+deb12u1), server 15.0)
transaction type: <builtin: select only>
number of transactions actually processed: 0
number of failed transactions: 0 (NaN%)
pgbench: error: ERROR:  the extended query protocol is not supported yet; use the simple query protocol
pgbench: error: client 0 script 0 aborted in command 1 query 0: ERROR:  the extended query protocol is not supported yet
pgbench: error: Run was aborted; the above results are incomplete.
"""


def test_pgbench_parse_reads_tps_latency_and_count():
    out = pgbench.parse(PGBENCH_OK, 0)
    assert out.ok
    assert out.tps == pytest.approx(821.018336)
    assert out.latency_ms == pytest.approx(1.218)
    assert out.transactions == 2462


def test_pgbench_parse_reports_the_first_error_line_of_a_failed_run():
    out = pgbench.parse(PGBENCH_EXTENDED_FAILS, 2)
    assert not out.ok
    assert out.error == "ERROR: the extended query protocol is not supported yet; use the simple query protocol"


def test_pgbench_parse_fails_on_nonzero_exit_or_missing_tps_or_failed_transactions():
    assert pgbench.parse(PGBENCH_OK, 1).error == "pgbench exited with code 1"
    assert pgbench.parse("nothing useful\n", 0).error == "no tps in pgbench output"
    failed = PGBENCH_OK.replace("number of failed transactions: 0", "number of failed transactions: 3")
    assert pgbench.parse(failed, 0).error == "3 failed transactions"


def test_pgbench_command_never_initialises_and_caps_threads_at_clients():
    w = pgbench.Workload("simple-update", 1, "prepared")
    argv = pgbench.command(w, "127.0.0.1", 5555, "main", 30, threads=2)
    assert argv[:4] == ["pgbench", "-n", "-b", "simple-update"]
    assert argv[argv.index("-M") + 1] == "prepared"
    assert argv[argv.index("-j") + 1] == "1"
    assert argv[argv.index("-T") + 1] == "30"
    names = [w.name for w in pgbench.workloads("full")]
    assert len(names) == 13  # 2 scripts x 1,4 clients x simple,prepared; x 16,64 clients simple; pipelined
    assert "select-only, 64 clients, -M simple" in names
    assert [w.name for w in pgbench.workloads("short")][8:] == ["select-only, 16 clients, -M simple"]


def test_pgbench_command_runs_the_pipelined_script_from_a_file_with_its_scale():
    w = pgbench.Workload(pgbench.PIPELINED, 4, "extended")
    argv = pgbench.command(w, "127.0.0.1", 5555, "main", 30, threads=2, scale=10)
    script = argv[argv.index("-f") + 1]
    assert "-b" not in argv and argv[argv.index("-s") + 1] == "10"
    with open(script) as f:
        text = f.read()
    assert text.index("\\startpipeline") < text.index("BEGIN;") < text.index("END;") < text.index("\\endpipeline")


@pytest.mark.parametrize("scale", [1, 3])
def test_sqlite_init_script_loads_pgbench_row_counts(scale):
    conn = apsw.Connection(":memory:")
    conn.execute(schema.sqlite_init_sql(scale))
    for table, want in schema.expected_counts(scale).items():
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == want
    # every account belongs to an existing branch, every teller too
    assert conn.execute("SELECT max(bid) FROM pgbench_accounts").fetchone()[0] == scale
    assert conn.execute("SELECT max(bid) FROM pgbench_tellers").fetchone()[0] == scale


def test_ratio_is_higher_is_better_for_both_throughput_and_latency():
    assert report.Row("w", "tps", 500, 1000).ratio == pytest.approx(0.5)
    assert report.Row("w", "ms", 2.0, 0.5).ratio == pytest.approx(0.25)
    assert report.Row("w", "tps", None, 1000, ours_error="boom").ratio is None
    assert report.Row("w", "tps", 500, 1000, bv=250).ratio_bv == pytest.approx(2.0)
    assert report.Row("w", "tps", 500, 1000, bv=None, bv_error="no").ratio_bv is None


def test_results_table_shows_failures_and_ratios():
    text = report.table([report.Row("select-only, 4 clients, -M simple", "tps", 1895.1, 95061.5),
                         report.Row("select-only, 1 client, -M prepared", "tps", None, 23212.5,
                                    ours_error="ERROR: a|b", bv_error="list index out of range")])
    lines = text.splitlines()
    assert lines[0] == "| workload | ours | PostgreSQL | buenavista | ours/PostgreSQL | ours/buenavista |"
    assert lines[2] == "| select-only, 4 clients, -M simple | 1,895 tps | 95,062 tps | — | 0.02× | — |"
    assert lines[3] == ("| select-only, 1 client, -M prepared | failed: ERROR: a\\|b | 23,212 tps | "
                        "failed: list index out of range | — | — |")


def test_targets_met_and_missed_with_the_gap():
    rows = [report.Row(analysis.SELECT4, "tps", 600, 1000),
            report.Row(analysis.SELECT16, "tps", 900, 9000, bv=1000),
            report.Row(analysis.SELECT64, "tps", 700, 9000, bv=1000),
            report.Row(analysis.UPDATE4, "tps", 300, 6000),
            report.Row(analysis.PIPELINED4, "tps", 100, 8000, bv=None, bv_error="no")]
    cpu = {analysis.SELECT16: {"edge": 150.0, "storage": 100.0}}
    got = analysis.targets(rows, cpu, 1.5, latency.LITERAL, (600.0, 1.0, 3.0), None)
    assert [t.met for t in got] == [False, True, True, False, False, False, False]
    assert "Gap: select-only, 64 clients, -M simple needs 800 tps, 1.1× what it has" in got[0].measured
    assert got[2].measured.startswith("250 µs")
    assert "Gap: needs 480 tps" in got[3].measured
    assert "600 commits/s achieved (below the rate" in got[5].measured
    none = analysis.targets([], {}, None, None, None, "not available: no replica in this build")
    assert [t.met for t in none] == [None] * 7


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert latency.percentile(values, 50) == 50
    assert latency.percentile(values, 99) == 99
    assert latency.percentile([3.0], 99) == 3.0


def test_profile_buckets_innermost_known_frame_and_skips_idle():
    raw = "\n".join([
        "main (x.py:1);select (selectors.py:468) 10",
        "main (x.py:1);handle (edge/connection.py:5);decode (edge/pgwire/codec.py:9) 3",
        "main (x.py:1);execute (storage/sqlite/backend.py:126) 5",
        "main (x.py:1);_write (grpc/aio/_call.py:500) 2",
        "main (x.py:1);Connect (storage/servicer.py:63) 4",
        "_worker (concurrent/futures/thread.py:81) 7",
    ])
    lines = {"storage/servicer.py:63": "        await context.write(Resp())"}
    s = profile.summarize(raw, source_line=lambda f: next((v for k, v in lines.items() if k in f), ""))
    assert s.samples == 31 and s.busy == 14
    assert s.buckets == {"SQLite (apsw)": 5, "gRPC": 6, "pg-wire codec": 3}
    assert s.top_self[0] == ("execute (storage/sqlite/backend.py:126)", 5)


def test_client_table_ratio_is_psycopg_over_sqldclient():
    from bench import client
    rows = [client.ClientRow("point select", 1000.0, 800.0, 50), client.ClientRow("insert, autocommit", 7000.0, 7000.0, 5)]
    lines = client.table(rows).splitlines()
    assert lines[0] == "| loop, 1 client, our edge | sqldclient | psycopg | psycopg/sqldclient |"
    assert lines[2] == "| point select | 1,000 µs | 800 µs | 0.80 |"
    assert lines[3] == "| insert, autocommit | 7,000 µs | 7,000 µs | 1.00 |"
