"""``python -m powerwall_bus`` is the ``pwbus`` command (the stack starts its children so)."""

import sys

from powerwall_bus.cli import main

sys.exit(main())
