"""``python -m loadtests.reference``: the straight-line reference server (see the package docstring)."""

import sys

from loadtests.reference.server import main

sys.exit(main())
