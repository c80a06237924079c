"""``python -m dejavu`` is the ``dejavu`` command."""

from .cli import console

console()
