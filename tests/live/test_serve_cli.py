"""``python -m trim_rl.live serve``'s command line: user errors are one line with exit code 2, a backend
that does not answer at start-up exits with code 3 naming it."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from _serve import stub_backends
from _stub_server import serve_fixture

from tests.live.conftest import REPO
from trim_rl.live.cli import main

BUDGET = REPO / "checkpoints" / "trim_agg_budget"


@pytest.fixture
def serve():
    yield from serve_fixture()


@pytest.fixture
def urls(serve):
    weak, strong, prm = stub_backends(serve)
    return ["--weak-url", weak.url, "--strong-url", strong.url, "--prm-url", prm.url, "--wait-ready", "0"]


def run(capsys, *args) -> tuple[int, str]:
    try:
        rc = main(["serve", *map(str, args)])
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


CASES = [
    (["--policy", "no/such/folder"], "--policy no/such/folder"),
    (["--policy", "a=thr:0.5", "--policy", "a=thr:0.3"], "--policy: the name 'a' is given twice"),
    (["--policy", "thr:2"], "--policy thr:2"),
    (["--policy", "thr:0.5", "--default-policy", "b"], "--default-policy 'b'"),
    (["--policy", "thr:0.5", "--target-strong-share", "0.3"], "--target-strong-share: no served policy is budget"),
    (["--policy", "thr:0.5", "--target-strong-share", "1.5"], "--target-strong-share"),
    (["--policy", "thr:0.5", "--lam", "1e-3"], "--lam: no served policy is budget-conditioned"),
    (["--policy", "thr:0.5", "--max-steps", "31"], "--max-steps"),
    (["--policy", "thr:0.5", "--max-queue", "-1"], "--max-queue"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[c[1] for c in CASES])
def test_user_errors_are_one_line_with_exit_2(capsys, urls, args, message):
    rc, err = run(capsys, *urls, *args)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_a_budget_for_a_checkpoint_without_a_budget_table_is_a_user_error(capsys, urls, tmp_path):
    old = tmp_path / "old_budget"  # as trim_rl 0.1 exported it: conditioned on the price, no table
    shutil.copytree(BUDGET, old)
    meta = json.loads((old / "policy.json").read_text())
    meta.pop("budget_table", None)
    (old / "policy.json").write_text(json.dumps(meta))
    rc, err = run(capsys, *urls, "--policy", old, "--budget", "20")
    assert rc == 2 and "--budget: " in err and "carries no budget table" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_a_user_error(capsys, urls, busy_port):
    rc, err = run(capsys, *urls, "--policy", "thr:0.5", "--port", busy_port)
    assert rc == 2 and f"--port {busy_port}: cannot listen" in err and len(err.strip().splitlines()) == 1


def test_a_backend_that_does_not_answer_is_exit_3_naming_it(capsys, serve):
    weak, strong, prm = stub_backends(serve)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    rc, err = run(capsys, "--weak-url", weak.url, "--strong-url", closed, "--prm-url", prm.url, "--wait-ready", "0",
                  "--retries", "0", "--policy", "thr:0.5")
    assert rc == 3 and f"server failed: {closed}/v1/models" in err and len(err.strip().splitlines()) == 1, err
