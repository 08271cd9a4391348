"""Settings (common.config over pydantic-settings): types, one naming rule, precedence, exit code 2."""
from __future__ import annotations

import pytest

from sqld.edge import config as edge_config
from sqld.launcher import config as launcher_config
from sqld.replication import config as replication_config
from sqld.scheduler import config as scheduler_config
from sqld.storage import config as storage_config


def test_a_bad_environment_value_stops_with_the_setting_named(capsys):
    with pytest.raises(SystemExit) as exc:
        edge_config.load([], {"SQLD_EDGE_TLS_REQUIRED": "ture"})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "tls_required" in err and "SQLD_EDGE_TLS_REQUIRED" in err and "'ture'" in err


@pytest.mark.parametrize("load, argv, name", [
    (scheduler_config.load, ["--idle-in-transaction-timeout", "abc"], "--idle-in-transaction-timeout"),
    (storage_config.load, ["--max-connections", "1.5"], "--max-connections"),
    (replication_config.load, ["--log-format", "xml"], "--log-format"),
    (edge_config.load, ["--log-min-duration-statement", "soon"], "--log-min-duration-statement"),
    (launcher_config.load, ["--replicas", "3"], "--replicas"),
    (launcher_config.load, ["--backend", "postgres"], "--backend"),
])
def test_a_bad_flag_value_stops_with_the_flag_named(capsys, load, argv, name):
    with pytest.raises(SystemExit) as exc:
        load(argv, {})
    assert exc.value.code == 2
    assert name in capsys.readouterr().err


def test_bool_flags_stand_alone_or_take_a_value():
    assert edge_config.load(["--tls-required"], {}).tls_required is True
    assert edge_config.load(["--tls-required", "--listen", "127.0.0.1:1"], {}).tls_required is True
    assert edge_config.load(["--tls-required", "false"], {"SQLD_EDGE_TLS_REQUIRED": "true"}).tls_required is False
    assert edge_config.load([], {"SQLD_EDGE_TLS_REQUIRED": "on"}).tls_required is True
    assert edge_config.load([], {}).tls_required is False


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    path = tmp_path / "sqld.toml"
    path.write_text('[scheduler]\nmax_sessions = 7\nwait_timeout = 2.5\nlisten = "127.0.0.1:1"\n'
                    '[storage]\ndatabases = ["a", "b"]\n[launcher]\npg_port = 6543\n')
    cfg = scheduler_config.load(["--config", str(path), "--listen", "127.0.0.1:3"],
                                {"SQLD_SCHEDULER_WAIT_TIMEOUT": "9"})
    assert (cfg.max_sessions, cfg.wait_timeout, cfg.listen) == (7, 9.0, "127.0.0.1:3")
    assert scheduler_config.load([], {}).max_sessions == 1000
    assert storage_config.load([], {"SQLD_STORAGE_CONFIG": str(path)}).databases == ("a", "b")
    assert launcher_config.load(["--config", str(path)], {}).pg_port == 6543
    assert launcher_config.load([], {"SQLD_LAUNCHER_PG_PORT": "6000"}).pg_port == 6000


def test_a_config_file_with_an_unknown_key_or_missing_stops(tmp_path, capsys):
    path = tmp_path / "sqld.toml"
    path.write_text('[edge]\nlistn = "127.0.0.1:1"\n')
    with pytest.raises(SystemExit) as exc:
        edge_config.load(["--config", str(path)], {})
    assert exc.value.code == 2 and "listn" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        edge_config.load(["--config", str(tmp_path / "none.toml")], {})
    assert exc.value.code == 2 and "none.toml" in capsys.readouterr().err
    path.write_text('[edge\n')
    with pytest.raises(SystemExit) as exc:
        edge_config.load(["--config", str(path)], {})
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # a directory (or a device) is named as such
        edge_config.load(["--config", str(tmp_path)], {})
    assert exc.value.code == 2 and "not a file" in capsys.readouterr().err
    path.write_bytes(b"\x00\xff[edge")  # not UTF-8: the same clean exit
    with pytest.raises(SystemExit) as exc:
        edge_config.load(["--config", str(path)], {})
    assert exc.value.code == 2


def test_every_service_and_the_launcher_follow_the_naming_rule():
    for load, env, field, value in [
        (edge_config.load, "SQLD_EDGE_LOG_CONNECTIONS", "log_connections", True),
        (scheduler_config.load, "SQLD_SCHEDULER_MAX_SESSIONS", "max_sessions", 5),
        (storage_config.load, "SQLD_STORAGE_ROLE", "role", "replica1"),
        (replication_config.load, "SQLD_REPLICATION_METRICS_LISTEN", "metrics_listen", "127.0.0.1:9"),
        (launcher_config.load, "SQLD_LAUNCHER_DATA_DIR", "data_dir", "/tmp/x"),
    ]:
        assert getattr(load([], {env: str(value).lower() if value is True else str(value)}), field) == value


def test_a_misspelt_variable_stops(capsys):
    with pytest.raises(SystemExit) as exc:
        edge_config.load([], {"SQLD_EDGE_TLS_REQURED": "true", "SQLD_OTHER_X": "1"})
    assert exc.value.code == 2 and "SQLD_EDGE_TLS_REQURED" in capsys.readouterr().err
