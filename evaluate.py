"""Evaluate routing policies on held-out trees (thin shim over :mod:`trim_rl.cli.evaluate`)."""

import sys

from trim_rl.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
