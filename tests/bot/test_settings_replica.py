"""A replica's name and liveness TTL: read like every setting, refused with the
variable named when wrong."""

from __future__ import annotations

import socket

import pytest

from bot.cli import EXIT_CONFIG, main
from bot.heartbeat import Heartbeat
from bot.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("GRACE_CONFIG", "GRACE_REPLICA", "GRACE_REPLICA_TTL_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRACE_DB", str(tmp_path / "grace.db"))


def test_a_replica_is_named_after_its_host_unless_told() -> None:
    settings = load_settings()
    assert settings.replica == socket.gethostname() and settings.replica_ttl_s == 30


def test_grace_replica_names_it(monkeypatch) -> None:
    monkeypatch.setenv("GRACE_REPLICA", "grace-eu_1.b")
    monkeypatch.setenv("GRACE_REPLICA_TTL_S", "12")
    settings = load_settings()
    assert (settings.replica, settings.replica_ttl_s) == ("grace-eu_1.b", 12)


@pytest.mark.parametrize("name", ["", "two words", "a/b", "x" * 65, "é"])
def test_a_replica_name_outside_the_rule_is_refused_naming_the_variable(
    monkeypatch, capsys, name: str
) -> None:
    monkeypatch.setenv("GRACE_REPLICA", name)
    assert main(["check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "GRACE_REPLICA:" in err and "1 to 64 characters" in err and "Traceback" not in err


def test_a_host_name_that_is_no_replica_name_says_to_set_grace_replica(monkeypatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 80)
    with pytest.raises(ConfigError, match=r"replica: .*set GRACE_REPLICA"):
        load_settings()


@pytest.mark.parametrize("ttl", ["0", "2", "-5", "soon"])
def test_a_liveness_ttl_too_short_is_refused(monkeypatch, capsys, ttl: str) -> None:
    monkeypatch.setenv("GRACE_REPLICA_TTL_S", ttl)
    assert main(["check"]) == EXIT_CONFIG
    assert "GRACE_REPLICA_TTL_S:" in capsys.readouterr().err


def test_a_replica_beats_three_times_a_ttl() -> None:
    beat = Heartbeat(store=None, replica="a", ttl_s=30, clock=None)  # type: ignore[arg-type]
    assert beat.every_s == 10
