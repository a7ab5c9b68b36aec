"""``kairos train`` and ``kairos evaluate`` on a store holding simulated history, and their errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from engine.sim import seed_store
from engine.store import ModelVersion
from tests.conftest import Project
from tests.learn.simworld import small_world

CAMPAIGN = """
    [campaign]
    name = "digest"
    goal = "click"

    [content]
    pool = "articles"
    items = 3

    [[variants]]
    name = "a"
    subject = "A"
    template = "digest"
"""


def seeded(project: Project) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    world = small_world(size=1000, weeks=5, seed=21, start=now - timedelta(hours=2))
    seed_store(project.store(), world.population, [world.catalog], world.history, now)
    project.write("campaigns/digest.toml", CAMPAIGN)


def test_train_promotes_a_better_model_and_evaluate_scores_it(project: Project) -> None:
    seeded(project)
    first = project.kairos("train", "--seed", "1", check=True)
    assert "objective lambdarank" in first.stdout
    assert "ndcg@3" in first.stdout and "auc" in first.stdout and "popularity" in first.stdout
    assert "promoted digest-" in first.stdout, first.stdout
    second = project.kairos("train", "digest", "--seed", "2", check=True)
    assert "current" in second.stdout  # compared with the promoted model on the same held-out sends
    with project.store().session() as session:
        models = session.exec(select(ModelVersion).where(ModelVersion.campaign == "digest")).all()
    assert len(models) == 2 and sum(m.promoted for m in models) == 1
    assert all(m.artifact and m.metrics["primary"] == "ndcg@3" for m in models)

    result = project.kairos("evaluate", "digest", "--json", "--days", "60", "--seed", "3", check=True)
    report = json.loads(result.stdout)
    assert report["decisions"] > 500 and report["skipped_without_propensity"] == 0
    for name in ("ips", "snips", "dr"):
        assert report[name]["low"] <= report[name]["value"] <= report[name]["high"]
    # The learned policy is estimated to do better than the uniform logging policy did (the
    # intervals are wide here: few logged sends match what a confident policy would do).
    assert min(report[name]["value"] for name in ("ips", "snips", "dr")) > 1.3 * report["logged_policy"]["value"]
    assert report["effective_sample_size"] < report["decisions"] and report["max_weight"] > 1
    text = project.kairos("evaluate", "digest", "--model", "popularity", "--days", "60", check=True).stdout
    assert "effective sample size" in text and "largest weight" in text


def test_learning_commands_explain_bad_input_and_broken_models(project: Project) -> None:
    project.write("campaigns/digest.toml", CAMPAIGN)
    missing = project.kairos("train")
    assert missing.returncode == 2 and "no Kairos database" in missing.stderr
    project.store()  # an empty database
    empty = project.kairos("train", "digest")
    assert empty.returncode == 2, empty.stderr
    assert "campaigns/digest.toml" in empty.stderr and "content.pool" in empty.stderr
    assert "no logged impressions" in empty.stderr
    # without names, every campaign is trained that can be; one without sends yet is skipped
    every = project.kairos("train")
    assert every.returncode == 0, every.stderr
    assert "digest: skipped, nothing to train on yet" in every.stdout and "popularity decides" in every.stdout
    unknown = project.kairos("evaluate", "nope")
    assert unknown.returncode == 2 and "no campaign 'nope'" in unknown.stderr

    seeded(project)
    project.kairos("train", "--seed", "1", check=True)
    bad_version = project.kairos("evaluate", "digest", "--model", "digest-nope")
    assert bad_version.returncode == 2 and "--model" in bad_version.stderr
    with project.store().session() as session:
        model = session.exec(select(ModelVersion).where(ModelVersion.promoted)).one()
        model.artifact = (model.artifact or b"")[:500]
        session.add(model)
    broken = project.kairos("evaluate", "digest")
    assert broken.returncode == 1 and "damaged" in broken.stderr
    assert "Traceback" not in broken.stderr
