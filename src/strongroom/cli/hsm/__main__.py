"""``python -m strongroom.cli.hsm`` is the ``strongroom-cli`` command."""

from . import run

run()
