"""Routing environments: ``RoutingEnv`` (gymnasium, ``trim_rl/Routing-v0``), the batched
``RoutingVecEnv`` and the observation builders shared with live decoding.  Their live counterparts,
``LiveRoutingEnv`` (``trim_rl/LiveRouting-v0``) and ``LiveRoutingVecEnv``, sit in the live layer
(:mod:`trim_rl.live.env`, :mod:`trim_rl.live.vec_env`): they are built on its routing loop."""

from trim_rl._registration import ENV_ID, LIVE_ENV_ID
from trim_rl.envs.observations import AggObservation, SeqObservation, StepHistory, make_builder
from trim_rl.envs.routing_env import KEEP, REGENERATE, RoutingEnv


def __getattr__(name):
    if name == "RoutingVecEnv":
        # trim_rl.envs.vec_env imports stable_baselines3: loaded on demand
        from trim_rl.envs.vec_env import RoutingVecEnv

        return RoutingVecEnv
    raise AttributeError(name)


__all__ = ["ENV_ID", "KEEP", "LIVE_ENV_ID", "REGENERATE", "AggObservation", "RoutingEnv", "RoutingVecEnv", "SeqObservation",
           "StepHistory", "make_builder"]
