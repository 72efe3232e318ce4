"""Training of routing policies (``train.py``)."""

from trim_rl.train.cli import main as _main


def main(argv=None):
    return _main(argv)
