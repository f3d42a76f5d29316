"""``python -m remit.cli``: the same command as ``remit``."""

import sys

from remit.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
