"""`python -m dpquery.cli`: the `dpquery` command."""
import sys

from dpquery.cli import main

sys.exit(main())
