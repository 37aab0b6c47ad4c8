"""``python -m loadtests.replay`` (as ``encore replay``)."""

import sys

from loadtests.replay.run import main

sys.exit(main())
