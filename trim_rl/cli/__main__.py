"""``python -m trim_rl.cli``: the ``trim-rl`` command."""

import sys

from trim_rl.cli import main

if __name__ == "__main__":
    sys.exit(main())
