"""Training and evaluation data, deterministic by seed."""
