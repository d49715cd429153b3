"""``user``: the cluster's users (list, create, delete, change-password, unlock)."""

from __future__ import annotations

from typing import Any, BinaryIO

import click

from ...trust.owner_unlock import MAX_REQUEST_BYTES
from .context import CliError, Context, command, main


@main.group()
def user() -> None:
    """Users of the cluster."""


def _check_role(ctx: Context, username: str, role: str) -> None:
    users = {u["username"]: u["role"] for u in ctx.session().list_users()}
    if username not in users:
        raise CliError(f"there is no user {username[:40]!r}; user list shows them")
    actual = "admin" if users[username] in ("admin", "unactivated-admin") else users[username]
    if actual != role:
        raise CliError(f"{username[:40]} has the role {actual}, not {role}")


@user.command("list")
@command
def user_list(ctx: Context) -> dict[str, Any]:
    """Every user with role and lock state (any login)."""
    return {"users": [{"username": u["username"], "role": u["role"], "locked": str(u["locked"]).lower(),
                       "mfa": [], "quorum": [], "cluster-coverage": "full"} for u in ctx.session().list_users()]}


@user.command("create")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@command
def user_create(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Create a user (admin login)."""
    ctx.session("admin").create_user(username, password, role)
    return {"username": username, "role": role}


@user.command("delete")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@command
def user_delete(ctx: Context, username: str, role: str) -> dict[str, Any]:
    """Delete a user (admin login)."""
    session = ctx.session("admin")
    _check_role(ctx, username, role)
    session.delete_user(username)
    return {"username": username}


@user.command("change-password")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@command
def user_change_password(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Set a user's password (an admin for any user; a user for itself)."""
    session = ctx.session()
    _check_role(ctx, username, role)
    old = ctx.password if username == ctx.username else None
    session.change_password(username, password, old)
    return {"username": username, "role": role}



@user.command("unlock")
@click.option("--username", help="The locked user (with --role; an admin login).")
@click.option("--role", type=click.Choice(["crypto-user", "admin"]))
@click.option("--owner-signed", type=click.File("rb"),
              help="An unlock request the cluster's owner signed (strongroom owner sign-unlock): unlocks an "
                   "admin with no login.")
@command
def user_unlock(ctx: Context, username: str | None, role: str | None, owner_signed: BinaryIO | None) -> dict[str, Any]:
    """Unlock a user locked out by wrong passwords; its password stays. An admin unlocks crypto users and other
    admins; the cluster's owner unlocks an admin with a signed request (when no admin can log in)."""
    if owner_signed is not None:
        if username or role:
            raise CliError("--owner-signed names its user; give no --username or --role")
        session = ctx.cluster().open_session()
        try:
            name = session.call("owner_unlock", owner_signed.read(MAX_REQUEST_BYTES + 1))
        finally:
            session.close()
        return {"username": name, "role": "admin", "locked": "false", "by": "owner"}
    if not username or not role:
        raise CliError("give --username and --role (an admin login), or --owner-signed FILE")
    session = ctx.session("admin")
    _check_role(ctx, username, role)
    session.call("unlock_user", username)
    return {"username": username, "role": role, "locked": "false"}
