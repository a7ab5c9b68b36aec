"""Variant policies, one per module, all behind :class:`VariantPolicy`."""

from engine.learn.bandit.base import VariantPolicy, mix_exploration
from engine.learn.bandit.thompson import ThompsonSampler
from engine.learn.bandit.uniform import UniformSplit

POLICIES: dict[str, type[VariantPolicy]] = {"thompson": ThompsonSampler, "none": UniformSplit}


def variant_policy(name: str) -> VariantPolicy:
    """The policy named in ``[optimize] bandit``."""
    return POLICIES[name]()


__all__ = ["POLICIES", "ThompsonSampler", "UniformSplit", "VariantPolicy", "mix_exploration", "variant_policy"]
