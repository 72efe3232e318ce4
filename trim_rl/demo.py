"""``python -m trim_rl.demo``: kept as a name for :mod:`trim_rl.cli.demo` (``make demo``)."""

import sys

from trim_rl.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
