"""Train routing policies (thin shim over :mod:`trim_rl.cli.train`)."""

import sys

if __name__ == "__main__":
    try:
        from trim_rl.cli.train import main
    except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing has started yet
        print("train.py: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
