"""Training, promotion, model loading and deciding work the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from engine.decide import Policy
from engine.learn.models import promoted_ranker
from engine.learn.ranker import LightGBMRanker, TrainingParams
from engine.learn.training import train_campaign
from engine.sim import seed_store
from engine.spec.load import load_campaign
from engine.store import Store, queries
from tests.learn.simworld import small_world


def test_train_promote_load_and_decide(store: Store, tmp_path: Path) -> None:
    world = small_world(size=400, weeks=4, seed=30)
    seed_store(store, world.population, [world.catalog], world.history, world.start)
    (tmp_path / "t.txt").write_text("x")
    (tmp_path / "c.toml").write_text('[campaign]\nname = "c"\ngoal = "click"\n\n[content]\npool = "articles"\n'
                                     'items = 2\n\n[[variants]]\nname = "a"\nsubject = "A"\ntemplate = "t"\n')
    spec = load_campaign(tmp_path / "c.toml", tmp_path)
    report = train_campaign(store, spec, world.start, np.random.default_rng(0), params=TrainingParams(rounds=40))
    assert report.rows == 3 * 4 * int(world.population.consent_email.sum())
    assert report.promoted and report.model_id is not None
    with store.session() as session:
        found = promoted_ranker(session, "c")
        assert found is not None and found[0] == report.model_id
        assert isinstance(found[1], LightGBMRanker)
        recipients = queries.all_recipients(session)[:50]
        decisions = Policy(spec, np.random.default_rng(1)).decide(session, recipients, world.start + timedelta(hours=1))
    assert decisions and all(d.model_versions["ranker"] == report.version for d in decisions)
    assert all(len(d.items) == 2 for d in decisions)
