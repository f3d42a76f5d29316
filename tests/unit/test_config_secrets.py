"""Secrets from files (``*_FILE``, as a mounted Kubernetes Secret gives them) and what
``remit serve`` says about the case-reference key: INFO on a first run, WARNING in a
deployment's configuration."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from remit import config as cfg
from remit.server.serve import key_notice

KEY = "ab" * 32


def test_a_secret_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "hmac"
    secret.write_text(KEY + "\n", encoding="utf-8")  # a final newline, as editors leave it
    loaded = cfg.load({"REMIT_AUDIT_HMAC_KEY_FILE": str(secret)})
    assert loaded.audit_hmac_key == KEY
    url = tmp_path / "redis"
    url.write_text("redis://:s3cret@redis.remit.svc:6379/0", encoding="utf-8")
    assert cfg.load({"REMIT_REDIS_URL_FILE": str(url)}).redis_url.endswith("/0")


def test_the_secret_settings_are_the_keys_and_urls() -> None:
    assert cfg.secret_file_names() == {
        "redis_url": "REMIT_REDIS_URL_FILE",
        "audit_sink": "REMIT_AUDIT_SINK_FILE",
        "audit_hmac_key": "REMIT_AUDIT_HMAC_KEY_FILE",
    }


def test_a_secret_file_is_checked_as_the_variable_is_and_never_echoed(tmp_path: Path) -> None:
    secret = tmp_path / "hmac"
    secret.write_text("not-hex-but-secret", encoding="utf-8")
    with pytest.raises(cfg.ConfigError, match="REMIT_AUDIT_HMAC_KEY_FILE: want hex") as err:
        cfg.load({"REMIT_AUDIT_HMAC_KEY_FILE": str(secret)})
    assert "not-hex-but-secret" not in str(err.value)
    with pytest.raises(cfg.ConfigError, match="REMIT_AUDIT_HMAC_KEY_FILE: cannot read"):
        cfg.load({"REMIT_AUDIT_HMAC_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(cfg.ConfigError, match="not both"):
        cfg.load({"REMIT_AUDIT_HMAC_KEY_FILE": str(secret), "REMIT_AUDIT_HMAC_KEY": KEY})
    # a setting that is no secret has no file variant
    with pytest.raises(cfg.ConfigError, match="REMIT_WORKERS"):
        cfg.load({"REMIT_WORKERS_FILE": str(secret), "REMIT_WORKERS": "0"})


def test_no_key_on_a_first_run_is_one_info_line_saying_how_to_set_one() -> None:
    level, text = key_notice(cfg.load({}))
    assert level == logging.INFO
    assert "per-process random key" in text and "REMIT_AUDIT_HMAC_KEY_FILE" in text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REMIT_REDIS_URL": "redis://127.0.0.1:1/0"}, "REMIT_REDIS_URL"),
        ({"REMIT_AUDIT_SINK": "file:/tmp/remit-decisions.log"}, "REMIT_AUDIT_SINK"),
        ({"REMIT_ACCESS_FILE": __file__}, "REMIT_ACCESS_FILE"),
        ({"REMIT_TLS_CERT": __file__, "REMIT_TLS_KEY": __file__}, "REMIT_TLS_CERT"),
    ],
)
def test_no_key_in_a_deployments_config_is_a_warning(env: dict[str, str], named: str) -> None:
    level, text = key_notice(cfg.load(env))
    assert level == logging.WARNING
    assert named in text and "do not link across restarts" in text
