"""Live decoding with real inference engines: engines, PRM scorers, the hybrid decoder and the
trajectory collector (``python -m trim_rl.live decode|collect``).

Nothing here imports vllm or httpx at import time; vllm is needed only for the in-process classes.
"""

from trim_rl.live.engines import OpenAICompatibleEngine, Sampling, StepRequest, StepResult, VLLMEngine
from trim_rl.live.http import EngineError, HTTPSettings
from trim_rl.live.prm import SelfVerifyScorer, VLLMInProcessPRM, VLLMPoolingPRM

__all__ = ["OpenAICompatibleEngine", "VLLMEngine", "Sampling", "StepRequest", "StepResult", "EngineError",
           "HTTPSettings", "SelfVerifyScorer", "VLLMPoolingPRM", "VLLMInProcessPRM"]
