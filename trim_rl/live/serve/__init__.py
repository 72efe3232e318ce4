"""A trained router behind an OpenAI-compatible HTTP server (``python -m trim_rl.live serve``).

- :mod:`.policies`: the served policies (``--policy [NAME=]SPEC``) and a request's budget -> price
- :mod:`.protocol`: request models, response / chunk / error bodies of the OpenAI API
- :mod:`.job`: one request's decoding state, its usage and its step trace
- :mod:`.scheduler`: step-level continuous batching over the shared backends
- :mod:`.control`: the price controller of ``--target-strong-share``
- :mod:`.metrics`: the Prometheus text of ``GET /metrics``
- :mod:`.app`: the FastAPI application
- :mod:`.main`: the ``serve`` command line

Nothing here imports fastapi, uvicorn or torch at import time.
"""
