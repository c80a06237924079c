"""``python -m dejavu`` is the ``dejavu`` command."""

from .cli import main

main()
