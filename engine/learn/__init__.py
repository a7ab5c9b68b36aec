"""Learning: bandits over variants, send-time and ranking models."""
