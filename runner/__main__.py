"""`python -m runner` entry point."""

import sys

from runner.cli import main

sys.exit(main())
