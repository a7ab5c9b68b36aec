"""Simulated readers: the hidden population acting on real delivered mail, over real HTTP.

Each message in a Maildir is read as its recipient would by the hidden truth (:class:`World`):
opened or not (the client fetches the open pixel), which tracked links are followed (GET, the
302 is not followed further), whether the reader unsubscribes (the RFC 8058 one-click POST a
mailbox provider sends), and whether a click ends in a conversion (the site reports it to
``POST /events`` with the API key). All of it goes to a running tracking server, so what the
demo and the tests measure afterwards is what that server recorded — nothing is written to
the store directly.
"""

from __future__ import annotations

import asyncio
import email
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parseaddr
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from engine.features.events import CHANNELS
from engine.render.tokens import verify_token
from engine.sim.respond import UNSUBSCRIBE_BASE, Sends, World, click_probabilities, open_probability

# The simulator's unsubscribe rate is per message sent; only opened messages are read here, and
# about one in five is opened.
UNSUBSCRIBE_AFTER_OPEN = UNSUBSCRIBE_BASE * 5

_LINK = re.compile(r'href="([^"]+/c/[^"]+)"')
_PIXEL = re.compile(r'src="([^"]+/o/[^"]+)"')


@dataclass(frozen=True)
class Mail:
    """One delivered message as a reader sees it: who got it and where its links go."""

    recipient: int            # index into the population
    campaign: str
    variant: str
    links: tuple[tuple[str, str], ...]   # (tracked URL, item id) in the order of the message
    pixel: str | None
    unsubscribe: str | None


@dataclass(frozen=True)
class Reading:
    """What the readers did, counted by the tracking server's answers."""

    messages: int
    opens: int
    clicks: int
    unsubscribes: int
    conversions: int
    refused: int              # requests the server did not accept (should be 0)
    seconds: float


def load_mail(paths: list[Path], world: World, key: bytes) -> list[Mail]:
    """Parse delivered messages; ``key`` reads which item a tracked link points at."""
    person = {f"{rid}@example.test": i for i, rid in enumerate(world.population.ids)}
    mails = []
    for path in paths:
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        recipient = person.get(parseaddr(str(message["To"]))[1])
        body = message.get_body(preferencelist=("html",)) if isinstance(message, EmailMessage) else None
        if recipient is None or body is None:
            continue
        html = body.get_content()
        links = []
        for url in dict.fromkeys(unescape(found) for found in _LINK.findall(html)):
            token = verify_token(key, urlsplit(url).path.rsplit("/", 1)[-1])
            if token is not None and token.item_id:
                links.append((url, token.item_id))
        pixel = _PIXEL.search(html)
        unsubscribe = re.search(r"<(https?://[^>]+)>", str(message.get("List-Unsubscribe", "")))
        # Feedback-ID is "variant:campaign:kairos:domain" (what mailbox providers group complaints by)
        variant, _, rest = str(message.get("Feedback-ID", "")).partition(":")
        mails.append(Mail(recipient, rest.partition(":")[0], variant, tuple(links),
                          unescape(pixel.group(1)) if pixel else None,
                          unsubscribe.group(1) if unsubscribe else None))
    return mails


async def read_mail(world: World, mails: list[Mail], client: httpx.AsyncClient, rng: np.random.Generator, *,
                    variants: tuple[str, ...], api_key: str | None, now: datetime,
                    concurrency: int = 32) -> Reading:
    """Act on ``mails`` by the hidden truth through the tracking server ``client`` points at.

    :param variants: the campaign's variant names in the order of the world's variant effects
        (a variant not named there has the first one's).
    :param api_key: the ingest API key; without it no conversions are reported.
    """
    started = time.perf_counter()
    if not mails:
        return Reading(0, 0, 0, 0, 0, 0, 0.0)
    catalog_index = {item: j for j, item in enumerate(world.catalog.ids)}
    slots = max(len(m.links) for m in mails) or 1
    items = np.full((len(mails), slots), -1)
    for row, mail in enumerate(mails):
        for slot, (_, item) in enumerate(mail.links):
            items[row, slot] = catalog_index.get(item, -1)
    sends = Sends(recipient=np.array([m.recipient for m in mails]), items=items,
                  at=np.full(len(mails), now.timestamp()), channel=np.full(len(mails), CHANNELS.index("email")),
                  variant=np.array([variants.index(m.variant) if m.variant in variants else 0 for m in mails]))
    opened = rng.random(len(mails)) < open_probability(world, sends, np.zeros(len(mails)))
    clicked = opened[:, None] & (rng.random(items.shape) < click_probabilities(world, sends))
    converted = clicked & (rng.random(items.shape) < world.population.conversion[sends.recipient][:, None])
    unsubscribed = opened & (rng.random(len(mails)) < UNSUBSCRIBE_AFTER_OPEN)

    limit = asyncio.Semaphore(concurrency)
    answers: dict[str, int] = {"opens": 0, "clicks": 0, "unsubscribes": 0, "conversions": 0, "refused": 0}

    async def request(kind: str, method: str, url: str, **kwargs: object) -> None:
        async with limit:
            response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        accepted = response.status_code in (200, 202, 302)
        answers[kind if accepted else "refused"] += 1

    calls = []
    for row, mail in enumerate(mails):
        if not opened[row]:
            continue
        if mail.pixel:
            calls.append(request("opens", "GET", mail.pixel))
        for slot, (url, item) in enumerate(mail.links):
            if clicked[row, slot]:
                calls.append(request("clicks", "GET", url))
            if converted[row, slot] and api_key:
                event = {"recipient_id": world.population.ids[mail.recipient], "type": "conversion",
                         "ts": now.astimezone(UTC).isoformat(), "item_id": item, "campaign": mail.campaign,
                         "channel": "email",
                         "id": f"reader-conversion-{mail.campaign}-{mail.recipient}-{slot}-{int(now.timestamp())}"}
                calls.append(request("conversions", "POST", "/events", json=event,
                                     headers={"Authorization": f"Bearer {api_key}"}))
        if unsubscribed[row] and mail.unsubscribe:
            calls.append(request("unsubscribes", "POST", mail.unsubscribe,
                                 data={"List-Unsubscribe": "One-Click"}))
    await asyncio.gather(*calls)
    return Reading(len(mails), answers["opens"], answers["clicks"], answers["unsubscribes"],
                   answers["conversions"], answers["refused"], time.perf_counter() - started)


# P(a reader buys within the week without any message), the same for everyone: what a holdout
# is measured against.
ORGANIC_CONVERSION = 0.03


async def organic_conversions(world: World, client: httpx.AsyncClient, rng: np.random.Generator, *,
                              api_key: str, now: datetime, concurrency: int = 32) -> int:
    """Conversions that no message caused, for the whole population, posted to ``/events``.

    They name no campaign, so a report credits them to each recipient's latest touch (a send, or
    a holdout member's planned send) — the baseline a holdout's lift is measured against.
    Returns how many the server accepted.
    """
    who = np.flatnonzero(rng.random(len(world.population)) < ORGANIC_CONVERSION)
    events = [{"recipient_id": world.population.ids[r], "type": "conversion", "ts": now.astimezone(UTC).isoformat(),
               "id": f"organic-conversion-{world.population.ids[r]}-{int(now.timestamp())}"} for r in who]
    limit = asyncio.Semaphore(concurrency)

    async def post(chunk: list[dict[str, str]]) -> int:
        async with limit:
            response = await client.post("/events", json=chunk, headers={"Authorization": f"Bearer {api_key}"})
        return len(chunk) if response.status_code == 202 else 0

    accepted = await asyncio.gather(*(post(events[i:i + 100]) for i in range(0, len(events), 100)))
    return sum(accepted)
