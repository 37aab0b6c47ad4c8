"""``python -m cli`` is ``encore``."""

from cli.main import main

raise SystemExit(main())
