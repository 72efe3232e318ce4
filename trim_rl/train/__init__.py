"""Training of routing policies (``train.py``)."""


def main(argv=None):
    from trim_rl.train.cli import main as _main

    return _main(argv)
