"""Evaluation: rollouts, sweeps and routing metrics."""
