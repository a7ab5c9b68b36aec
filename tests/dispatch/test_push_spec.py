"""The push channel and sending limits in campaign files and config: validated at the edge."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.config import Settings
from engine.dispatch.breaker import CircuitBreaker
from engine.dispatch.limits import Limits, RateLimited
from engine.dispatch.retry import Retrying
from engine.errors import ConfigError, SpecError
from engine.schedule.send import build_context
from engine.spec import load_campaign
from engine.store import Store
from tests.conftest import ROOT, Project

CAMPAIGN = """
[campaign]
name = "alerts"
goal = "click"

[content]
pool = "news"

[channels]
allowed = ["push", "email"]

[[variants]]
name = "a"
subject = "News"
template = "digest"
{variant}
{extra}
"""


def campaign(tmp_path: Path, variant: str = 'push_body = "Hi {{ recipient.id }}"', extra: str = "") -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(CAMPAIGN.format(variant=variant, extra=extra))
    return path


def test_push_campaign_keys_load(tmp_path: Path) -> None:
    spec = load_campaign(campaign(tmp_path, 'push_body = "Hi"\npush_url = "{{ items[0].url }}"',
                                  "[limits]\nrate = 50\ndomain_rate = 2.5"), ROOT / "templates")
    assert spec.channels == ("push", "email")
    assert spec.variants[0].push_body == "Hi" and spec.variants[0].push_url == "{{ items[0].url }}"
    assert (spec.limits.rate, spec.limits.domain_rate) == (50.0, 2.5)


@pytest.mark.parametrize(("variant", "extra", "message"), [
    ("", "", "alerts.toml:12: variants[0].push_body: missing; a campaign that allows push needs push_body"),
    ('push_body = "{{ oops"', "", "variants[0].push_body: expected a valid template"),
    ('push_body = "x"', "[limits]\nrate = 0", "limits.rate: expected a number of messages per second greater than 0"),
    ('push_body = "x"', "[limits]\nburst = 3", "limits.burst: unknown key; [limits] takes rate, domain_rate"),
])
def test_bad_push_and_limit_keys_name_the_line_and_field(tmp_path: Path, variant: str, extra: str,
                                                         message: str) -> None:
    with pytest.raises(SpecError) as error:
        load_campaign(campaign(tmp_path, variant, extra), ROOT / "templates")
    assert message in str(error.value)


def test_the_campaign_lowers_the_configured_limits_and_policies_wrap_the_transport(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(textwrap.dedent("""
        [email]
        transport = "smtp"

        [sending]
        rate_limit = 100
        domain_rate_limit = 10
        domain_concurrency = 4
        pause_after = 7
        retry_attempts = 5
    """))
    settings = Settings.load(tmp_path / "config.toml", environ={"KAIROS_SECRET": "test-secret"})
    spec = load_campaign(campaign(tmp_path, 'push_body = "x"', "[limits]\nrate = 20"), ROOT / "templates")
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    ctx = build_context(settings, store, spec, np.random.default_rng(0), lambda: None)  # type: ignore[arg-type,return-value]
    retry = ctx.transport
    assert isinstance(retry, Retrying) and retry.attempts == 5
    breaker = retry.inner
    assert isinstance(breaker, CircuitBreaker) and breaker.threshold == 7
    limited = breaker.inner
    assert isinstance(limited, RateLimited) and limited.limits == Limits(20.0, 10.0, 4)
    assert ctx.push is None  # no provider configured
    store.dispose()


def test_a_bad_fcm_key_file_is_a_config_error_naming_it(project: Project) -> None:
    project.write("fcm.json", json.dumps({"type": "service_account", "client_email": "x@y"}))
    project.write("campaigns/alerts.toml", CAMPAIGN.format(variant='push_body = "x"', extra=""))
    with project.config.open("a") as config:
        config.write('\n[push.fcm]\nproject_id = "p"\ncredentials_file = "fcm.json"\n')
    project.write("content.csv", "id,pool,title,url,topic,published_at\n"
                  "n1,news,Headline,https://news.example.test/1,tech,2026-11-20T08:00:00+00:00\n")
    project.kairos("import", "content", "content.csv", check=True)
    result = project.kairos("send", "alerts")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "fcm.json: private_key: missing from the service-account key file" in result.stderr
    assert "Traceback" not in result.stderr


def test_sending_settings_refuse_bad_values_with_the_variable_named() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.load(None, environ={"KAIROS_SENDING_RATE_LIMIT": "fast"})
    assert "$KAIROS_SENDING_RATE_LIMIT: sending.rate_limit: expected a number, got 'fast'" in str(error.value)
