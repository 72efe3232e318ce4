"""Register ``trim_rl/Routing-v0`` and ``trim_rl/LiveRouting-v0`` with gymnasium (done by ``import trim_rl``)."""

ENV_ID = "trim_rl/Routing-v0"
LIVE_ENV_ID = "trim_rl/LiveRouting-v0"


def register_envs() -> None:
    from gymnasium.envs.registration import register, registry

    if ENV_ID not in registry:
        register(id=ENV_ID, entry_point="trim_rl.envs.routing_env:RoutingEnv")
    if LIVE_ENV_ID not in registry:
        register(id=LIVE_ENV_ID, entry_point="trim_rl.live.env:LiveRoutingEnv")
