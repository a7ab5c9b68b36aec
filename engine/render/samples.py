"""Sample recipients for ``kairos validate`` and ``kairos preview``: every variant, rendered for real.

Samples come from the store when there is one (the first recipients with an address, and the
newest items of the campaign's pool, in slot order); otherwise from a small built-in cast, so
a template can be checked before any data is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.errors import RenderError, SpecError
from engine.render.compose import ComposedEmail, EmailComposer
from engine.render.mime import message_id
from engine.render.push import PushTemplates, RenderedPush
from engine.spec.model import CampaignSpec
from engine.store import Store, queries
from engine.store.queries import RecipientRow

SAMPLE_COUNT = 3
_BUILT_IN_RECIPIENTS = (
    RecipientRow("sample-ada", "ada@example.com", "Europe/London", "en", True, True,
                 {"first_name": "Ada", "plan": "pro"}),
    RecipientRow("sample-grace", "grace@example.com", "America/New_York", "en", True, True,
                 {"first_name": "Grace", "plan": "free"}),
    RecipientRow("sample-zoe", "zoe.muller@example.com", "Europe/Berlin", "de", True, False,
                 {"first_name": "Zoë", "plan": "pro"}),
)
_BUILT_IN_TOPICS = ("science", "travel", "food", "business", "culture")


@dataclass(frozen=True)
class SampleItem:
    id: str
    title: str
    url: str
    topic: str | None
    published_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Samples:
    """Recipients and items to render with; ``source`` says where they came from."""

    recipients: tuple[RecipientRow, ...]
    items: tuple[SampleItem, ...]
    source: str


def email_context(spec: CampaignSpec, variant: str, recipient: RecipientRow,
                  items: Sequence[SampleItem]) -> dict[str, Any]:
    """What a template sees (the shape the pump gives it): ``recipient``, ``items``, ``campaign``."""
    return {
        "recipient": {"id": recipient.id, "email": recipient.email, "locale": recipient.locale,
                      "timezone": recipient.timezone, "attributes": dict(recipient.attributes)},
        "items": [{"id": item.id, "title": item.title, "url": item.url, "topic": item.topic,
                   "published_at": item.published_at, "attributes": dict(item.attributes), "slot": slot}
                  for slot, item in enumerate(items)],
        "campaign": {"name": spec.name, "variant": variant},
    }


def load_samples(store: Store | None, spec: CampaignSpec, now: datetime, *, count: int = SAMPLE_COUNT,
                 recipient_id: str | None = None) -> Samples:
    """Sample recipients and items for ``spec``.

    :param recipient_id: preview this recipient only; it must exist in the store.
    :raises SpecError: when ``recipient_id`` is given and there is no such recipient.
    """
    recipients: list[RecipientRow] = []
    items: list[SampleItem] = []
    if store is not None:
        with store.session() as session:
            if recipient_id is not None:
                recipients = list(queries.recipients_by_id(session, [recipient_id]).values())
            else:
                recipients = queries.first_recipients(session, count)
            newest = list(reversed(queries.pool_items(session, spec.content.pool)))[:spec.content.items]
            items = [SampleItem(i.id, i.title, i.url, i.topic, i.published_at, dict(i.attributes)) for i in newest]
    if recipient_id is not None and (not recipients or recipients[0].email is None):
        raise SpecError(None, "--recipient", f"no recipient {recipient_id!r} with an email address in the database")
    source = "the database"
    if not recipients:
        recipients, source = list(_BUILT_IN_RECIPIENTS[:count]), "built-in sample recipients (no recipients yet)"
    if len(items) < spec.content.items:
        source += f"; {'some ' if items else ''}built-in sample items (pool {spec.content.pool!r} is short)"
        items += _built_in_items(spec, now, spec.content.items - len(items))
    return Samples(tuple(recipients), tuple(items), source)


def _built_in_items(spec: CampaignSpec, now: datetime, count: int) -> list[SampleItem]:
    return [SampleItem(f"sample-{n}", f"Sample story {n + 1} for {spec.name}", f"https://example.com/stories/{n + 1}",
                       _BUILT_IN_TOPICS[n % len(_BUILT_IN_TOPICS)], (now - timedelta(hours=n + 1)).astimezone(UTC),
                       {"reading_minutes": 3 + n}) for n in range(count)]


@dataclass(frozen=True)
class SampleMessage:
    """One variant composed for one sample recipient, or the error that stopped it."""

    variant: str
    recipient_id: str
    email: ComposedEmail | None
    error: RenderError | None = None
    push: RenderedPush | None = None


@dataclass(frozen=True)
class SampleCheck:
    """Every variant of a campaign rendered for the samples: messages, errors and warnings."""

    messages: tuple[SampleMessage, ...]
    samples: Samples
    warnings: tuple[str, ...]

    @property
    def errors(self) -> list[RenderError]:
        return [m.error for m in self.messages if m.error is not None]


def compose_samples(composer: EmailComposer, samples: Samples, now: datetime,
                    variants: Sequence[str] | None = None) -> SampleCheck:
    """Compose every (or the named) variant for every sample recipient, collecting errors and warnings."""
    spec = composer.spec
    messages: list[SampleMessage] = []
    warnings: dict[str, None] = {}
    push = PushTemplates() if "push" in spec.channels else None
    if not composer.tracking.base_url.startswith("https://"):
        warnings[f"tracking.base_url is {composer.tracking.base_url}: mailbox providers only honour one-click "
                 "unsubscribe (RFC 8058) over https"] = None
    for variant in spec.variants:
        if variants is not None and variant.name not in variants:
            continue
        for number, recipient in enumerate(samples.recipients, start=1):
            context = email_context(spec, variant.name, recipient, samples.items)
            try:
                compiled = composer.templates.compile(spec, variant)
                email = composer.compose(
                    message_key=number, recipient_id=recipient.id, to=recipient.email or "", variant=variant.name,
                    context=context, item_urls={item.url: item.id for item in samples.items},
                    header_message_id=message_id(0, number, spec.name, composer.domain), date=now)
                notification = push.render(variant, context) if push is not None else None
            except RenderError as exc:
                messages.append(SampleMessage(variant.name, recipient.id, None, exc))
                continue
            messages.append(SampleMessage(variant.name, recipient.id, email, push=notification))
            warnings.update(dict.fromkeys(email.rendered.warnings))
            if compiled.fast_html is None and compiled.html is not None \
                    and compiled.plan.reason not in ("no <style> to inline", ""):
                warnings[f"{compiled.html_where.path}: CSS {compiled.css_note}"] = None
    return SampleCheck(tuple(messages), samples, tuple(warnings))
