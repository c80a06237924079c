"""``python -m dejavu.training`` is the ``dejavu`` command."""

from .cli import main

main()
