"""``python -m jup2kub.cli``: the ``jup2kub`` command."""

from jup2kub.cli import main

main()
