import sys

from trim_rl.live.cli import main

if __name__ == "__main__":
    sys.exit(main())
