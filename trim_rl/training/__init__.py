"""Training of routing policies: the recipe and its stages, budgets, run folders (``train.py`` is
:mod:`trim_rl.cli.train`)."""
