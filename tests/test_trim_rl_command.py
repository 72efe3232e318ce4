"""The trim-rl console command dispatches to every tool."""

import subprocess
import sys
import pytest
from tests.conftest import REPO

# slow as a whole: make test-fast leaves it out
pytestmark = pytest.mark.slow



def trim_rl(*args):
    return subprocess.run([sys.executable, "-m", "trim_rl.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_every_command_has_help():
    from trim_rl.cli import COMMANDS

    r = trim_rl("--help")
    assert r.returncode == 0 and all(name in r.stdout for name in COMMANDS)
    for name in COMMANDS:
        r = trim_rl(name, "--help")
        assert r.returncode == 0, (name, r.stderr[-500:])
        assert r.stdout.startswith(f"usage: trim-rl {name}"), (name, r.stdout[:200])


def test_an_unknown_command_is_one_line_and_exit_2():
    r = trim_rl("trian")
    assert r.returncode == 2 and "unknown command 'trian'" in r.stderr
