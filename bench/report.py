"""Benchmark: `kairos report` over a million messages.

Plants one run of a campaign in SQLite — 10% holdout, two variants, two personas, conversions at
known rates — then builds the full report split by segment, and prints one JSON document: load
and report seconds, the process's peak resident memory, and the measured rates beside the
planted ones.

    python -m bench.report                      # 1,000,000 messages
    python -m bench.report --messages 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from engine.report import build_report
from engine.store import Store
from engine.store.tables import Event, Message, Run
from tests.report.planted import write_campaign

CHUNK = 100_000
TREATED_RATE, HOLDOUT_RATE = 0.10, 0.05


def plant(store: Store, count: int, start: datetime, rng: np.random.Generator) -> None:
    with store.session() as session:
        run = Run(campaign="spring-sale", spec_hash="bench", started_at=start)
        session.add(run)
        session.flush()
        run_id = run.id
    held = rng.random(count) < 0.1
    for first in range(0, count, CHUNK):
        rows = [{"run_id": run_id, "campaign": "spring-sale", "recipient_id": f"r{n:07d}",
                 "state": "holdout" if held[n] else "sent", "send_at": start, "sent_at": None if held[n] else start,
                 "variant": None if held[n] else ("bold", "calm")[n % 2], "channel": None if held[n] else "email",
                 "updated_at": start} for n in range(first, min(count, first + CHUNK))]
        with store.session() as session:
            session.execute(sa.insert(Message), rows)
    converted = np.flatnonzero(rng.random(count) < np.where(held, HOLDOUT_RATE, TREATED_RATE))
    with store.session() as session:
        session.execute(sa.insert(Event), [{"id": f"c{n}", "recipient_id": f"r{n:07d}", "type": "conversion",
                                            "ts": start + timedelta(hours=5)} for n in converted])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(f"sqlite:///{Path(directory) / 'kairos.db'}")
        spec = write_campaign(Path(directory))
        began = time.perf_counter()
        plant(store, args.messages, now - timedelta(days=3), np.random.default_rng(0))
        loaded = time.perf_counter() - began
        labels = {f"r{n:07d}": ("bargain-hunters", "news-readers")[n % 3 == 0] for n in range(args.messages)}
        began = time.perf_counter()
        with store.session() as session:
            report = build_report(session, spec, now, np.random.default_rng(0), by="segment", labels=labels)
        seconds = time.perf_counter() - began
        store.dispose()
    overall = report.overall
    assert overall.holdout is not None and overall.lift is not None
    print(json.dumps({
        "messages": report.messages, "load_seconds": round(loaded, 1), "report_seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "treated_rate": {"planted": TREATED_RATE, "measured": round(overall.goal.value, 4)},
        "holdout_rate": {"planted": HOLDOUT_RATE, "measured": round(overall.holdout.value, 4)},
        "lift": {"planted": TREATED_RATE - HOLDOUT_RATE, "low": overall.lift.low, "high": overall.lift.high},
    }, indent=2))


if __name__ == "__main__":
    main()
