"""Off-policy estimates of a second known policy, from data logged by a first, cover its true value."""

from __future__ import annotations

import numpy as np

from engine.learn.ope import evaluate_policy


def test_ips_snips_and_dr_cover_the_true_value_of_another_policy() -> None:
    """Contexts and rewards from the simulator's kind of truth: P(reward | context, action) is known,
    the logging policy is a known softmax, the target a known epsilon-greedy on a noisy model."""
    covered = {"ips": 0, "snips": 0, "dr": 0}
    errors = {"ips": [], "snips": [], "dr": []}
    trials = 20
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        n, actions = 4000, 5
        taste = rng.dirichlet(np.ones(actions) * 0.7, size=n)
        truth = 0.05 + 0.4 * taste                                   # P(reward | x, a)
        logging = np.exp(rng.normal(size=(n, actions)))
        logging /= logging.sum(axis=1, keepdims=True)                # known logging policy
        model = truth + rng.normal(0, 0.05, size=truth.shape)        # an imperfect reward model
        target = np.full((n, actions), 0.1 / actions)
        target[np.arange(n), model.argmax(axis=1)] += 0.9            # epsilon-greedy on the model
        true_value = float((target * truth).sum(axis=1).mean())
        logged = (logging.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
        reward = (rng.random(n) < truth[np.arange(n), logged]).astype(float)
        picked = np.arange(n), logged
        report = evaluate_policy(reward, logging[picked], target[picked], rng,
                                 direct=(target * model).sum(axis=1), logged_prediction=model[picked],
                                 bootstrap=300)
        assert report.decisions == n and 0 < report.effective_sample_size < n
        assert report.max_weight > 1.0
        for name, estimate in report.estimates.items():
            covered[name] += estimate.covers(true_value)
            errors[name].append(estimate.value - true_value)
    for name, count in covered.items():
        assert count >= 0.8 * trials, (name, covered)      # 95% intervals: most cover
        assert abs(np.mean(errors[name])) < 0.01, (name, np.mean(errors[name]))  # no systematic bias
    # DR's reward model makes it the tightest of the three.
    assert np.std(errors["dr"]) < np.std(errors["ips"])
