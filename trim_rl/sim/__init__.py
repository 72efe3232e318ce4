"""The calibrated trajectory simulator: ``python -m trim_rl.sim {calibrate,generate,report}``."""
