"""``python -m zapnb``: the ``zapnb`` command line (:mod:`zapnb.cli`)."""

from __future__ import annotations

import sys

from zapnb.cli import main

if __name__ == "__main__":
    sys.exit(main())
