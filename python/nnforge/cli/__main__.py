"""`python -m nnforge.cli`: the same as the `nnforge` command."""

import sys

from nnforge.cli import main

sys.exit(main())
