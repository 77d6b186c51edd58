"""``python -m arges``: the same as the ``arges`` command."""

from arges.cli.main import main

main()
