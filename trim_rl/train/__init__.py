"""Training of routing policies: the recipe and its stages, budgets, run folders (``train.py`` is
:mod:`trim_rl.train.cli`)."""

from trim_rl._callable import callable_as_api

callable_as_api(__name__)  # trim_rl.train(...) is the API function, whichever this attribute holds
