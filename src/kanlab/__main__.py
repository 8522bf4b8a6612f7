"""`python -m kanlab ...`: the `kanlab` command, Ctrl-C handling included."""

import sys

from kanlab._command import main

sys.exit(main())
