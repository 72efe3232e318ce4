"""trim_rl: step-level routing between a weak and a strong language model (TRIM).

A weak model writes each reasoning step, a process reward model (PRM) scores it, and a router
decides per step to keep it or regenerate it with a strong model.  The package turns precomputed
step trajectory trees into a Gymnasium environment, trains and evaluates routing policies, and
plugs them into live decoding.
"""

__version__ = "0.1.0"
