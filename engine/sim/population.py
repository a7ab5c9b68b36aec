"""A synthetic audience with known (hidden) tastes, and a content pool it reacts to.

Ground truth is planted so learning can be checked against it:

- each recipient belongs to one of a few *groups* (personas), whose topic tastes differ;
- a recipient's topic taste is drawn around their group's, so groups are recoverable but people
  still differ;
- each recipient has an active local hour (when they open mail) and a time zone;
- each item has a topic and a quality.

The chance a recipient clicks an item is :meth:`Population.click_probability`; opening depends
on how close the send is to their active hour. All randomness comes from the given generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

TOPICS = ("sports", "politics", "tech", "culture", "travel", "food", "science", "business")
ZONES = ("Europe/Madrid", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Australia/Sydney")
GROUP_NAMES = ("sports fans", "news readers", "techies", "culture lovers", "travellers")
FIRST_NAMES = ("Ana", "Bill", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jo", "Kemal", "Lena",
               "Mateo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tara")


@dataclass(frozen=True)
class Population:
    """Recipients with hidden tastes. Arrays are aligned with ``ids``."""

    ids: tuple[str, ...]
    group: np.ndarray          # int, index into GROUP_NAMES
    taste: np.ndarray          # (recipients x topics), rows sum to 1
    engagement: np.ndarray     # per-recipient multiplier of click probability
    active_hour: np.ndarray    # local hour they read mail
    zone: tuple[str, ...]
    plan: tuple[str, ...]
    consent_email: np.ndarray
    first_name: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def recipient_rows(self) -> list[dict[str, Any]]:
        """Rows for ``kairos import recipients`` (and the store)."""
        return [{
            "id": rid, "email": f"{rid}@example.test", "timezone": self.zone[i], "locale": "en",
            "consent_email": bool(self.consent_email[i]), "consent_push": False,
            "plan": self.plan[i], "first_name": self.first_name[i],
        } for i, rid in enumerate(self.ids)]

    def click_probability(self, recipients: np.ndarray, item_topics: np.ndarray,
                          item_quality: np.ndarray) -> np.ndarray:
        """P(click | recipient, item), for aligned index arrays (the hidden truth)."""
        taste = self.taste[recipients, item_topics]
        return np.asarray(np.clip(0.6 * taste * self.engagement[recipients] * item_quality, 0.0, 0.95))

    def open_probability(self, recipients: np.ndarray, local_hours: np.ndarray) -> np.ndarray:
        """P(open) falls off with the distance from the recipient's active hour."""
        distance = np.abs(((local_hours - self.active_hour[recipients]) + 12) % 24 - 12)
        return np.asarray(0.55 * np.exp(-distance / 3.0) + 0.05)


def make_population(size: int, rng: np.random.Generator, *, groups: int = len(GROUP_NAMES),
                    consent_rate: float = 0.97) -> Population:
    """``size`` recipients in ``groups`` planted groups."""
    group_taste = np.full((groups, len(TOPICS)), 0.2)
    for g in range(groups):
        favourites = [(2 * g) % len(TOPICS), (2 * g + 1) % len(TOPICS)]
        group_taste[g, favourites] = [6.0, 3.0]
    group = rng.integers(0, groups, size=size)
    taste = np.vstack([rng.dirichlet(group_taste[g] * 3.0) for g in group])
    plan = np.where(rng.random(size) < 0.3, "pro", "free")
    engagement = rng.gamma(4.0, 0.25, size=size) * np.where(plan == "pro", 1.3, 1.0)
    zones = rng.integers(0, len(ZONES), size=size)
    return Population(
        ids=tuple(f"r{n:05d}" for n in range(size)),
        group=group,
        taste=taste,
        engagement=engagement,
        active_hour=rng.choice(np.array([7, 8, 12, 13, 18, 19, 20, 21]), size=size),
        zone=tuple(ZONES[z] for z in zones),
        plan=tuple(str(p) for p in plan),
        consent_email=rng.random(size) < consent_rate,
        first_name=tuple(FIRST_NAMES[i] for i in rng.integers(0, len(FIRST_NAMES), size=size)),
    )


@dataclass(frozen=True)
class Catalog:
    """A content pool with hidden quality."""

    pool: str
    ids: tuple[str, ...]
    topic: np.ndarray      # index into TOPICS
    quality: np.ndarray
    published_at: tuple[datetime, ...]

    def content_rows(self) -> list[dict[str, Any]]:
        return [{
            "id": iid, "pool": self.pool,
            "title": f"{TOPICS[self.topic[j]].capitalize()} story #{j + 1}",
            "url": f"https://news.example.test/{TOPICS[self.topic[j]]}/{j + 1}",
            "topic": TOPICS[self.topic[j]], "published_at": self.published_at[j],
            "attributes": {"reading_minutes": int(3 + (j * 7) % 12)},
        } for j, iid in enumerate(self.ids)]


def make_catalog(pool: str, size: int, now: datetime, rng: np.random.Generator) -> Catalog:
    """``size`` items spread over every topic, published over the last three days."""
    topic = np.arange(size) % len(TOPICS)
    rng.shuffle(topic)
    ages = rng.uniform(0, 72, size=size)
    return Catalog(
        pool=pool,
        ids=tuple(f"{pool}-{j:03d}" for j in range(size)),
        topic=topic,
        quality=rng.uniform(0.6, 1.4, size=size),
        published_at=tuple(now - timedelta(hours=float(a)) for a in ages),
    )


def simulate_history(population: Population, catalog: Catalog, *, weeks: int, items_per_message: int,
                     now: datetime, rng: np.random.Generator, campaign: str = "history") -> list[dict[str, Any]]:
    """Weekly messages of uniformly random items sent to everyone, and their opens and clicks.

    The logging policy is known (every item equally likely in every slot), so each `sent`
    impression carries its true propensity, as history imported from another sender would.
    """
    events: list[dict[str, Any]] = []
    _n, m = len(population), len(catalog.ids)
    k = min(items_per_message, m)
    reachable = np.flatnonzero(population.consent_email)
    offsets = np.array([(now.astimezone(ZoneInfo(z)).utcoffset() or timedelta(0)).total_seconds() / 3600
                        for z in population.zone])
    for week in range(weeks, 0, -1):
        day = now - timedelta(days=7 * week)
        send_hour_utc = 9
        local_hour = (send_hour_utc + offsets[reachable]) % 24
        picks = np.argsort(rng.random((len(reachable), m)), axis=1)[:, :k]
        opened = rng.random(len(reachable)) < population.open_probability(reachable, local_hour)
        sent_at = day.replace(hour=send_hour_utc, minute=0, second=0, microsecond=0)
        for slot in range(k):
            items = picks[:, slot]
            p_click = population.click_probability(reachable, catalog.topic[items], catalog.quality[items])
            clicked = opened & (rng.random(len(reachable)) < p_click * 1.6)
            for row, recipient in enumerate(reachable):
                rid = population.ids[recipient]
                item = catalog.ids[items[row]]
                base = {"recipient_id": rid, "item_id": item, "campaign": campaign, "channel": "email",
                        "position": slot}
                events.append({**base, "id": f"{campaign}-w{week}-{rid}-{slot}", "type": "sent", "ts": sent_at,
                               "propensity": 1.0 / (m - slot)})
                if clicked[row]:
                    hour = int(population.active_hour[recipient] - offsets[recipient]) % 24
                    events.append({**base, "id": f"{campaign}-w{week}-{rid}-{slot}-c", "type": "click",
                                   "ts": sent_at.replace(hour=hour) + timedelta(days=1 if hour < 9 else 0,
                                                                                minutes=int(rng.integers(0, 50)))})
        opens_at = [(population.ids[r], int(population.active_hour[r] - offsets[r]) % 24)
                    for r in reachable[opened]]
        for rid, hour in opens_at:
            events.append({"id": f"{campaign}-w{week}-{rid}-o", "recipient_id": rid, "type": "open",
                           "campaign": campaign, "channel": "email",
                           "ts": sent_at.replace(hour=hour) + timedelta(days=1 if hour < 9 else 0, minutes=5)})
    return events
