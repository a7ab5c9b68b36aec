"""The schema of config.toml: section -> key -> parser, and the environment variable of each key.

A parser takes the raw value (from the file, or a string from the environment) and returns the
typed one, or raises ValueError saying what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a whole number")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, int):
        raise ValueError("a whole number")
    return value


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError("a whole number of at least 1")
    return number


def _port(value: Any) -> int:
    number = _int(value)
    if not 0 < number < 65536:
        raise ValueError("a port number between 1 and 65535")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError("a number") from None


def _positive_float(value: Any) -> float:
    number = _float(value)
    if not number > 0:
        raise ValueError("a number greater than 0")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError("true or false")


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(repr(o) for o in options))
        return str(value)

    return parse


def _database_url(value: Any) -> str:
    url = _str(value)
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ValueError("a sqlite:/// or postgresql+psycopg:// URL")
    return url


def _http_url(value: Any) -> str:
    url = _str(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("an http:// or https:// URL")
    return url


def _mailbox(value: Any) -> str:
    address = _str(value).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or not address.isascii() or any(c in address for c in " <>\"+"):
        raise ValueError("a plain mailbox such as bounces@example.com (no name, no '+')")
    return address


def _duration(value: Any) -> timedelta:
    match = re.match(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", _str(value).strip())
    if not match or not any(match.groups()):
        raise ValueError("a duration such as '30s', '10m', '24h', '7d' or '2w'")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def _quiet_hours(value: Any) -> tuple[int, int]:
    expected = 'two local times ["HH:MM", "HH:MM"], e.g. ["21:00", "08:00"] (may wrap midnight)'
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise ValueError(expected)
    minutes = []
    for text in value:
        match = re.match(r"^([01]\d|2[0-3]):([0-5]\d)$", text)
        if not match:
            raise ValueError(expected)
        minutes.append(int(match.group(1)) * 60 + int(match.group(2)))
    if minutes[0] == minutes[1]:
        raise ValueError(expected + ", not the same time twice")
    return minutes[0], minutes[1]


def _cluster_count(value: Any) -> int:
    number = _int(value)
    if not 2 <= number <= 30:
        raise ValueError("a whole number from 2 to 30")
    return number


def _env_name(value: Any) -> str:
    name = _str(value)
    if not name.replace("_", "").isalnum():
        raise ValueError("the name of an environment variable")
    return name


SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "database": {"url": _database_url},
    "email": {
        "transport": _choice("smtp", "inbox"),
        "host": _str,
        "port": _port,
        "from": _str,
        "starttls": _bool,
        "tls": _bool,
        "username": _str,
        "password_env": _env_name,
        "max_connections": _positive_int,
        "timeout": _float,
        "return_path": _mailbox,
        "unsubscribe_mailto": _mailbox,
        "ca_file": _str,
        "pipelining": _bool,
    },
    "email.dkim": {"domain": _str, "selector": _str, "private_key_file": _str},
    "tracking": {"base_url": _http_url, "secret_env": _env_name, "api_key_env": _env_name},
    "push.fcm": {"project_id": _str, "credentials_file": _str, "endpoint": _http_url, "ca_file": _str},
    "push.apns": {"team_id": _str, "key_id": _str, "key_file": _str, "topic": _str, "endpoint": _http_url,
                  "ca_file": _str},
    "push.webpush": {"vapid_private_key_file": _str, "subject": _str, "ca_file": _str},
    "paths": {"campaigns": _str, "templates": _str, "models": _str, "inbox": _str},
    "segments": {"rebuild_every": _duration, "min_size": _positive_int, "k_min": _cluster_count,
                 "k_max": _cluster_count},
    "sending": {"batch_size": _positive_int, "rate_limit": _positive_float, "domain_rate_limit": _positive_float,
                "domain_concurrency": _positive_int, "retry_attempts": _positive_int,
                "retry_backoff": _positive_float, "retry_backoff_max": _positive_float,
                "max_attempts": _positive_int, "pause_after": _positive_int, "quiet_hours": _quiet_hours,
                "daily_cap": _positive_int},
    "daemon": {"poll_interval": _positive_float, "lease": _duration, "retrain_every": _duration,
               "trigger_lookback": _duration},
}
REQUIRED = {
    "email.dkim": ("domain", "selector", "private_key_file"),
    "push.fcm": ("project_id", "credentials_file"),
    "push.apns": ("team_id", "key_id", "key_file", "topic"),
    "push.webpush": ("vapid_private_key_file", "subject"),
}


def env_variable(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key``."""
    return "KAIROS_" + f"{section}.{key}".replace(".", "_").upper()
