"""`python -m splade_cli ...`: the same as the `splade-serve` console script."""
import sys

from splade_cli.main import main

sys.exit(main())
