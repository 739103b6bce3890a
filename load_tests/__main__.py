"""`python -m load_tests --help`: see load_tests/runner.py."""
import sys

from load_tests.runner import main

sys.exit(main())
