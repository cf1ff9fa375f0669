"""`python -m zbanner_xdp.lab up|down|status`."""

import sys

from .lifecycle import main

sys.exit(main())
