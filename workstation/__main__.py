"""``python -m workstation``: the same as the ``workstation`` command."""

import sys

from workstation.cli import main

if __name__ == "__main__":
    sys.exit(main())
