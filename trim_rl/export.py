"""``python -m trim_rl.export``: kept as a name for :mod:`trim_rl.cli.export`.

``trim_rl.export`` is the Python API's function; this file only answers ``python -m``, which runs it
as ``__main__`` without binding the package attribute.  Imported by name it refuses, so the
attribute can never become a module.
"""

import sys

if __name__ != "__main__":
    raise ImportError("trim_rl.export is a function (trim_rl.export(run, out)); the command's module is "
                      "trim_rl.cli.export")

from trim_rl.cli.export import main  # noqa: E402

sys.exit(main())
