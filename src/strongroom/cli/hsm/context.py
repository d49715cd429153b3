"""The command line's context: the cluster connection and login a command uses, the ``{"error_code", "data"}``
envelope (or text for people) it answers in, and the top-level group with the login commands."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ...errors import StrongroomError, exit_code
from .list_options import CliGroup


class CliError(StrongroomError):
    """A mistake to report with what to fix (``error_code`` 1)."""


ROLES = ("admin", "crypto-user")


def credentials() -> tuple[str, str, str]:
    """``(username, role, password)`` of single-command mode, from ``CLOUDHSM_PIN`` (``username:password``) and
    ``CLOUDHSM_ROLE`` (``admin`` or ``crypto-user``; default ``crypto-user``), the service's variables; or, when
    ``CLOUDHSM_PIN`` is not set, from ``STRONGROOM_PIN`` and ``STRONGROOM_ROLE``.

    Raises:
        CliError: no PIN, a PIN without ``:``, or a role that is not one of :data:`ROLES`.
    """
    prefix = "CLOUDHSM" if os.environ.get("CLOUDHSM_PIN") is not None else "STRONGROOM"
    pin = os.environ.get(f"{prefix}_PIN")
    role = os.environ.get(f"{prefix}_ROLE", "crypto-user")
    if not pin:
        raise CliError("no login: set CLOUDHSM_PIN to username:password and CLOUDHSM_ROLE to admin or "
                       "crypto-user, or log in inside strongroom-cli interactive")
    if ":" not in pin:
        raise CliError(f"{prefix}_PIN is username:password (a colon between them); it holds no colon")
    if role not in ROLES:
        raise CliError(f"{prefix}_ROLE is admin or crypto-user, not {role[:40]!r}")
    username, _, password = pin.partition(":")
    return username, role, password


class Context:
    """The command's cluster connection and login, made when a command first needs them."""

    def __init__(self, cluster_path: str | None, output: str) -> None:
        self.cluster_path = cluster_path
        self.output = output
        self._cluster: Any = None
        self._session: Any = None
        self.role: str | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.interactive = False  # the shell keeps the connection and the login between commands

    def login(self, username: str, role: str, password: str) -> None:
        if self._session is not None:
            raise CliError(f"already logged in as {self.username}; log out first")
        self._session = self.cluster().login(username, password, role=role)
        self.username, self.role, self.password = username, role, password

    def logout(self) -> None:
        if self._session is None:
            raise CliError("not logged in")
        self._session.close()
        self._session = self.username = self.role = self.password = None

    def cluster(self) -> Any:
        import strongroom.client as sdk

        if self._cluster is None:
            if not self.cluster_path:
                raise CliError("no cluster: give --cluster PATH (the cluster.json of strongroom up) or set "
                               "STRONGROOM_CLUSTER")
            self._cluster = sdk.connect(sdk.ClientConfig.from_file(self.cluster_path, certificate="cli"))
        return self._cluster

    def session(self, role: str | None = None) -> Any:
        """A session logged in with the credentials of the environment (:func:`credentials`); ``role`` demands
        one. Raises :class:`CliError` when there are none or they are malformed."""
        if self._session is None:
            if self.interactive and not (os.environ.get("CLOUDHSM_PIN") or os.environ.get("STRONGROOM_PIN")):
                raise CliError("not logged in: login --username U --role admin|crypto-user")
            username, env_role, password = credentials()
            self.login(username, env_role, password)
        if role is not None and self.role != role:
            raise CliError(f"this command needs {'an' if role[0] in 'aeiou' else 'a'} {role} login "
                           f"(CLOUDHSM_ROLE={role})")
        return self._session

    def close(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except StrongroomError:
                pass
        if self._cluster is not None:
            self._cluster.close()


def emit(ctx: Context, data: Any) -> None:
    """Print a command's answer: the ``{"error_code": 0, "data": …}`` envelope, or text at most
    :data:`~.text_output.WIDTH` columns wide for ``--output text``."""
    if ctx.output == "json":
        click.echo(json.dumps({"error_code": 0, "data": data}, indent=2, ensure_ascii=False))
        return
    from .text_output import render

    click.echo("\n".join(render(data)))


def fail(ctx_output: str, message: str, error: BaseException) -> NoReturn:
    """Report a failure (the envelope with ``error_code`` 1, or ``Error: …`` on stderr wrapped as text output
    is) and exit with the error's exit code."""
    if ctx_output == "json":
        click.echo(json.dumps({"error_code": 1, "data": message}, indent=2, ensure_ascii=False))
    else:
        from .text_output import render

        click.echo("\n".join(render(f"Error: {message}")), err=True)
    sys.exit(exit_code(error))


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body with the context, print its data in the envelope, turn errors into error_code 1."""
    @functools.wraps(fn)
    @click.pass_obj
    def run(ctx: Context, *args: Any, **kwargs: Any) -> None:
        try:
            data = fn(ctx, *args, **kwargs)
        except CliError as exc:
            fail(ctx.output, str(exc), exc)
        except StrongroomError as exc:
            fail(ctx.output, f"{exc.message} ({exc.ckr_name})", exc)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(ctx.output, f"{where}{exc.strerror or 'input/output error'}", exc)
        except (ValueError, OverflowError, KeyError, TypeError) as exc:
            fail(ctx.output, f"{exc.args[0] if exc.args else type(exc).__name__}", exc)
        finally:
            if not ctx.interactive:
                ctx.close()
        emit(ctx, data)

    return run


@click.group(cls=CliGroup)
@click.option("--cluster", "cluster_path", envvar="STRONGROOM_CLUSTER", default=None,
              help="The cluster's configuration (cluster.json of strongroom up) [env STRONGROOM_CLUSTER].")
@click.option("--output", type=click.Choice(["json", "text"]), default=None, help="[default: json]")
@click.pass_context
def main(click_ctx: click.Context, cluster_path: str | None, output: str | None) -> None:
    """Strongroom HSM command line (users, keys, crypto). Credentials of single-command mode: CLOUDHSM_ROLE
    (admin or crypto-user) and CLOUDHSM_PIN (username:password); in the interactive shell, login."""
    if isinstance(click_ctx.obj, Context) and click_ctx.obj.interactive:
        if output is not None:  # a command of the interactive shell: its lasting context
            click_ctx.obj.output = output
        return
    click_ctx.obj = Context(cluster_path, output or "json")


_SINGLE_COMMAND = ("in single-command mode nothing outlives the command, so a login would be forgotten at once: "
                   "give each command CLOUDHSM_ROLE=<admin|crypto-user> and CLOUDHSM_PIN=<username>:<password>, "
                   "or run strongroom-cli interactive and {} there")


@main.command("login")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", default=None, help="Asked for when not given (the shell keeps it out of its history).")
@command
def login_command(ctx: Context, username: str, role: str, password: str | None) -> dict[str, Any]:
    """Log in, in the interactive shell: the login lasts until logout. Single-command mode keeps no login; it
    takes CLOUDHSM_ROLE and CLOUDHSM_PIN instead."""
    if not ctx.interactive:
        raise CliError(_SINGLE_COMMAND.format("log in"))
    if password is None:
        password = click.prompt("Password", hide_input=True)
    ctx.login(username, role, password)
    return {"username": username, "role": role}


@main.command("logout")
@command
def logout_command(ctx: Context) -> str:
    """End the login of the interactive shell."""
    if not ctx.interactive:
        raise CliError(_SINGLE_COMMAND.format("log out"))
    ctx.logout()
    return "Logout successful"


@main.command("interactive")
@click.pass_obj
def interactive(ctx: Context) -> None:
    """A shell: every command of this CLI, with history, tab completion and help; the login lasts until logout."""
    from ..shell import Shell

    ctx.interactive = True
    try:
        Shell(main, ctx).cmdloop()
    finally:
        ctx.interactive = False
        ctx.close()


