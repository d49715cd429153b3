"""``user``: the cluster's users (list, create, delete, change-password, unlock)."""

from __future__ import annotations

from typing import Any

import click

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
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["crypto-user", "admin"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The user's new password (a reset unlocks the account).")
@command
def user_unlock(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Unlock a locked-out user by resetting its password (admin login)."""
    session = ctx.session("admin")
    _check_role(ctx, username, role)
    session.change_password(username, password)
    return {"username": username, "role": role, "locked": "false"}

