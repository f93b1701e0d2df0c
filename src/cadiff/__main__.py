"""`python -m cadiff` runs the command-line tool."""

import sys

from cadiff.cli import main

sys.exit(main())
