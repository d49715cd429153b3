"""``strongroom-cli``: the HSM command line for users, keys and crypto, with the command names and the JSON output
of the CLI of the service Strongroom matches, so that scripts carry over.

Every command prints ``{"error_code": 0, "data": …}`` or, failing, ``{"error_code": 1, "data": "<message>"}`` and
exits 1; ``--output text`` prints for people (:mod:`.text_output`). The cluster comes from ``--cluster PATH`` (the
``cluster.json`` that ``strongroom up`` writes) or ``STRONGROOM_CLUSTER``; credentials, as the service's CLI takes
them, from ``CLOUDHSM_ROLE`` (``admin`` or ``crypto-user``) and ``CLOUDHSM_PIN`` (``username:password``).

One module per command group: :mod:`.cluster_commands`, :mod:`.user_commands`, :mod:`.key_commands`,
:mod:`.import_commands` (``key import pem``), :mod:`.wrap_commands` (``key wrap``/``unwrap``),
:mod:`.crypto_commands` (sign, verify, MACs) and :mod:`.cipher_commands` (encrypt, decrypt); :mod:`.context` holds
the connection, the login and the output envelope, :mod:`.list_options` the space-separated list options.
"""

from __future__ import annotations

import itertools
import sys

import click

from . import (
    cipher_commands,
    cluster_commands,
    crypto_commands,
    import_commands,
    key_commands,
    user_commands,
    wrap_commands,
)
from .context import CliError, fail, main

__all__ = ["CliError", "main", "run"]
# importing the command groups registers their commands on ``main``
_GROUPS = (cipher_commands, cluster_commands, crypto_commands, import_commands, key_commands, user_commands,
           wrap_commands)


def run(argv: list[str] | None = None) -> None:
    """The ``strongroom-cli`` entry point: usage mistakes too answer with the JSON envelope and exit 1."""
    args = argv if argv is not None else sys.argv[1:]
    output = "text" if "--output=text" in args or any(
        a == "--output" and b == "text" for a, b in itertools.pairwise(args)) else "json"
    try:
        main.main(args=argv, prog_name="strongroom-cli", standalone_mode=False)
    except click.exceptions.Abort as exc:
        fail(output, "aborted: a value was needed and no terminal could be asked (give it as an option, e.g. "
                     "--password)", exc)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        fail(output, exc.format_message() + (f" (see: strongroom-cli {ctx.command_path.partition(' ')[2]} "
                                             "--help)".replace("  ", " ") if ctx else ""), exc)

