"""`python -m idlifecycle` runs the command line."""

import sys

from idlifecycle.cli import main

sys.exit(main())
