"""`python -m dpquery.cli`: the `dpquery` command."""
import sys

from dpquery.cli import main

if __name__ == "__main__":  # not when a spawned child process re-imports this module
    sys.exit(main())
