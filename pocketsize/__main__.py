"""`python -m pocketsize` (what `torchrun -m pocketsize ...` runs): the `pocketsize` command."""

import sys

from pocketsize.cli import main

sys.exit(main())
