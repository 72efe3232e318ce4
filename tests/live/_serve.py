"""Helpers of the step-routing server's tests: the server in a thread or in a subprocess (the real
command line either way), backends that answer as vLLM does (:mod:`_vllm`), and ``/metrics`` read with
Prometheus' own parser."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _vllm import STEP_TAG, FakeVLLM
from tests.conftest import REPO



def steps_then_answer(n: int, length: int = 40, tag: str = ""):
    """A generating model whose k-th step is "Step k{tag}: xxx..." and whose n-th states the answer 4."""
    def gen(prompt: str, payload: dict):
        k = prompt.rsplit("assistant\n", 1)[1].count("\n\n") + 1
        if k >= n:
            return "So the answer is \\boxed{4}.", "stop", 151645  # <|im_end|> as the stop token id
        return f"Step {k}{tag}: " + "x" * length, "stop", "\n\n"
    return gen


def low_at(step: int, where: str = ""):
    """A PRM scoring 0.2 the given step of problems containing ``where`` (thr:0.5 regenerates it), 0.9
    every other step."""
    def prm(prompt: str) -> list[float]:
        problem, answer = prompt.split("<|im_start|>assistant\n", 1)
        parts = answer.split(STEP_TAG)[:-1]
        return [0.2 if part.startswith(f"Step {step}:") and where in problem else 0.9 for part in parts]
    return prm


@dataclass
class Backend:
    """A FakeVLLM behind a switch: ``delay`` seconds per HTTP request, ``mode`` ok / garbage / refuse /
    hang (no answer for ``hang_s``); ``prompts`` records every completion prompt."""

    fake: FakeVLLM
    delay: float = 0.0
    mode: str = "ok"
    hang_s: float = 30.0
    prompts: list = field(default_factory=list)

    def __call__(self, req):
        if req.path == "/v1/completions":
            p = req.payload["prompt"]
            self.prompts.extend(p if isinstance(p, list) else [p])
        if req.path in ("/v1/completions", "/pooling"):
            if self.delay:
                time.sleep(self.delay)
            if self.mode == "garbage":
                return 200, "<html>502 bad gateway</html>"
            if self.mode == "refuse":
                return 503, {"error": {"message": "overloaded"}}
            if self.mode == "hang":
                time.sleep(self.hang_s)
        return self.fake(req)


def stub_backends(serve, n_steps: int = 3, low_step: int = 2, where: str = "", delay: float = 0.0):
    """Weak, strong and PRM servers answering as vLLM does: solutions of ``n_steps`` steps, the PRM low at
    the weak model's step ``low_step`` of problems containing ``where``."""
    weak = Backend(FakeVLLM(model="weak", gen=steps_then_answer(n_steps)), delay)
    strong = Backend(FakeVLLM(model="strong", gen=steps_then_answer(n_steps, 30, " (strong)")), delay)
    prm = Backend(FakeVLLM(model="prm", prm=low_at(low_step, where)), delay)
    return serve(weak), serve(strong), serve(prm)


def serve_args(weak, strong, prm, *extra) -> list[str]:
    return ["serve", "--weak-url", weak.url, "--strong-url", strong.url, "--prm-url", prm.url, "--port", "0",
            "--timeout", "5", "--retries", "1", "--wait-ready", "0", "--log-level", "warning", "--no-access-log",
            *map(str, extra)]


class ThreadServer:
    """The server built by the real command line (``prepare``), run by uvicorn in a thread."""

    def __init__(self, argv: list[str]):
        import uvicorn

        from trim_rl.live.cli import build_parser
        from trim_rl.live.serve.main import prepare

        self.args = build_parser().parse_args(argv)
        self.app, self.sock, self.served, _ = prepare(self.args)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def client(self, api_key: str = "none", **kw):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, **kw)


class ServeProcess:
    """``python -m trim_rl.live serve ...`` in a subprocess; its stderr goes to ``log``."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        self.fh = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "trim_rl.live", *argv], cwd=REPO, stdout=self.fh,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            m = re.search(r"at (http://[\d.]+:\d+)/v1", log.read_text())
            if m:
                self.url = m.group(1)
                break
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"serve did not start: {log.read_text()}"
            time.sleep(0.1)

    def client(self, **kw):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0, **kw)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()
        return self.proc.returncode


def metrics(url: str) -> dict:
    """``/metrics`` parsed by prometheus_client: (sample name, sorted label items) -> value."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def metric(m: dict, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, lab), v in m.items() if n == name and set(labels.items()) <= set(lab))
