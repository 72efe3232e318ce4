"""Train routing policies (thin shim over :mod:`trim_rl.train`)."""

import sys

from trim_rl.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
