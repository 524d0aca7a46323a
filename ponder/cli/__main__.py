"""`python -m ponder.cli ...`, the same as the `ponder` command."""

import sys

from ponder.cli import main

sys.exit(main())
