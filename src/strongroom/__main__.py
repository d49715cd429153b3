"""``python -m strongroom`` is the ``strongroom`` command."""

from .cli.service import main

main(prog_name="strongroom")
