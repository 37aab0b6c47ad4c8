"""``python -m loadtests.bench`` (what ``make bench`` runs)."""

import sys

from loadtests.bench.runner import main

sys.exit(main())
