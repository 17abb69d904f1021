"""`python -m callboard serve|demo`: the same as the `callboard` console script."""

import sys

from callboard.dashboard.cli import main

sys.exit(main())
