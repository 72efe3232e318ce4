"""TRIM-POMDP: a three-state POMDP (S0 all steps correct, S1 an earlier step wrong, S2 only the
newest step wrong) fitted from data, a recursive Bayes filter, and a vectorised finite-horizon
solver giving one policy table per price lambda.

Modules: :mod:`.observation` (PRM score likelihoods), :mod:`.tokens` (token-cost bins),
:mod:`.transition` (error and ending rates), :mod:`.model` (the container), :mod:`.fit` (fitting
from trees or ProcessBench-style records), :mod:`.belief` (the filter), :mod:`.solver` (value
iteration), :mod:`.policy` (``predict`` and the ``policy.json`` + ``policy.npz`` artifact).
"""
