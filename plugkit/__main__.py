"""`python -m plugkit`: the same as the `plugkit` command."""

from plugkit.cli import main

main()
