"""Settings: config.toml plus ``KAIROS_*`` environment overrides, validated into frozen objects.

Built once at the entry point (``Settings.load``) and passed down; nothing else reads the file
or the environment. Every key of config.toml has an environment override named after its path:
``email.port`` is ``KAIROS_EMAIL_PORT``, ``email.dkim.selector`` is ``KAIROS_EMAIL_DKIM_SELECTOR``.
Secrets are never written in the file: the file names the variable that holds them
(``tracking.secret_env``, ``email.password_env``, ``tracking.api_key_env``).

Relative paths (and a relative SQLite file) are resolved against the working directory, like
every path given on the command line: ``kairos send x --config ops/prod.toml`` run from a project
root finds that root's ``campaigns/`` and ``templates/``.
"""

from engine.config.schema import REQUIRED, SCHEMA, env_variable
from engine.config.settings import (
    DEFAULT_CONFIG,
    ApnsSettings,
    DaemonSettings,
    DkimSettings,
    EmailSettings,
    FcmSettings,
    PathSettings,
    SegmentSettings,
    SendingSettings,
    Settings,
    TrackingSettings,
    WebPushSettings,
)

__all__ = [
    "DEFAULT_CONFIG", "REQUIRED", "SCHEMA", "ApnsSettings", "DaemonSettings", "DkimSettings", "EmailSettings",
    "FcmSettings", "PathSettings", "SegmentSettings", "SendingSettings", "Settings", "TrackingSettings",
    "WebPushSettings", "env_variable",
]
