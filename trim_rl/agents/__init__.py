"""Routing policies on the SB3 ``predict`` protocol: TRIM-Thr and rule baselines, oracles, PPO
networks (TRIM-Agg / TRIM-Seq) and exported deployment checkpoints.  Import submodules directly;
nothing heavy is imported here."""
