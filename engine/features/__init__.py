"""Columnar (numpy) features built from the store at send time."""
