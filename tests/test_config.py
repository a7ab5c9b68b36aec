from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import Settings, env_variable
from engine.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(None, environ={})
    assert settings.database_url == f"sqlite:///{tmp_path / 'kairos.db'}"
    assert settings.email.transport == "smtp" and settings.email.port == 2525
    assert settings.paths.templates == tmp_path / "templates"
    assert settings.tracking.secret is None


def test_file_values_relative_paths_and_secrets_from_the_environment(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "conf" / "config.toml"
    config.parent.mkdir()
    config.write_text("""
[database]
url = "sqlite:///data/k.db"

[email]
port = 2600
password_env = "SMTP_PASS"
max_connections = 4

[email.dkim]
domain = "example.com"
selector = "k1"
private_key_file = "dkim/k1.pem"

[paths]
templates = "../tpl"
""")
    settings = Settings.load(config, environ={"SMTP_PASS": "hunter2", "KAIROS_SECRET": "s3cret"})
    assert settings.database_url == f"sqlite:///{tmp_path / 'data/k.db'}"
    assert settings.email.port == 2600 and settings.email.max_connections == 4
    assert settings.email.password == "hunter2"
    assert settings.tracking.secret == b"s3cret"
    # relative to the working directory, not to the config file
    assert settings.email.dkim is not None and settings.email.dkim.private_key_file == tmp_path / "dkim/k1.pem"
    assert settings.paths.templates == tmp_path / "../tpl"
    assert "hunter2" not in repr(settings)


def test_environment_overrides_every_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[email]\nport = 2600\n')
    environ = {env_variable("email", "port"): "2700", "KAIROS_DATABASE_URL": "postgresql://u@h/db",
               "KAIROS_EMAIL_DKIM_SELECTOR": "ignored-without-the-rest"}
    with pytest.raises(ConfigError, match=r"email\.dkim: missing domain, private_key_file"):
        Settings.load(config, environ=environ)
    del environ["KAIROS_EMAIL_DKIM_SELECTOR"]
    settings = Settings.load(config, environ=environ)
    assert settings.email.port == 2700
    assert settings.database_url == "postgresql://u@h/db"


@pytest.mark.parametrize(("text", "field", "line"), [
    ('[email]\nport = "abc"\n', "email.port", 2),
    ('[email]\n\nprot = 25\n', "email.prot", 3),
    ('[mail]\nport = 25\n', "mail", 1),
    ('[database]\nurl = "mysql://x"\n', "database.url", 2),
    ('[email]\ntransport = "carrier-pigeon"\n', "email.transport", 2),
    ('[sending]\nbatch_size = 0\n', "sending.batch_size", 2),
])
def test_bad_values_name_the_file_line_and_field(tmp_path: Path, text: str, field: str, line: int) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Settings.load(config, environ={})
    assert caught.value.field == field
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{config}:{line}: {field}: ")


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$KAIROS_EMAIL_PORT: email\.port: expected a port number"):
        Settings.load(None, environ={"KAIROS_EMAIL_PORT": "99999"})


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        Settings.load(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[email\nport = 1\n")
    with pytest.raises(ConfigError) as caught:
        Settings.load(broken, environ={})
    assert caught.value.line == 1 and "not valid TOML" in str(caught.value)
