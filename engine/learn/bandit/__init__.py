"""Variant policies, one per module, all behind :class:`VariantPolicy`; the guardrail wraps any."""

from engine.learn.bandit.base import ArmOutcomes, VariantPolicy, argmax_distribution, mix_exploration
from engine.learn.bandit.epsilon import EpsilonGreedy
from engine.learn.bandit.guardrail import Guardrail
from engine.learn.bandit.staged import StagedTest
from engine.learn.bandit.thompson import ThompsonSampler
from engine.learn.bandit.ucb import UpperConfidenceBound
from engine.learn.bandit.uniform import UniformSplit

POLICIES: dict[str, type[VariantPolicy]] = {
    "thompson": ThompsonSampler, "ucb": UpperConfidenceBound, "epsilon": EpsilonGreedy, "none": UniformSplit,
}


def variant_policy(name: str) -> VariantPolicy:
    """The policy named in ``[optimize] bandit``."""
    return POLICIES[name]()


__all__ = ["POLICIES", "ArmOutcomes", "EpsilonGreedy", "Guardrail", "StagedTest", "ThompsonSampler",
           "UniformSplit", "UpperConfidenceBound", "VariantPolicy", "argmax_distribution", "mix_exploration",
           "variant_policy"]
