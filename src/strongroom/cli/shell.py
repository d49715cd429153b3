"""The interactive shell of ``strongroom-cli``: reads a command line, runs it through the same click commands as
single-command mode with one lasting context (connection and login), completes command and option names with Tab,
keeps a history file (mode 0600) that never holds a secret, and answers ``help [command …]``."""

from __future__ import annotations

import cmd
import os
import shlex
from pathlib import Path
from typing import Any

import click

HISTORY = Path(os.environ.get("STRONGROOM_CLI_HISTORY", Path.home() / ".strongroom_cli_history"))
# Options whose value is a secret, and the commands where one is (``None``: every command): the history keeps the
# line without them, so recalling it asks for the password again.
SECRET_OPTIONS = {"--password": None, "--pin": None, "--data": ("crypto encrypt",)}


def without_secrets(line: str) -> str | None:
    """``line`` as the history may keep it: every secret option and its value removed; ``None`` when the line
    cannot be split into words (then nobody can tell what in it is secret)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    command = " ".join(w for w in words[:2] if not w.startswith("-"))
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        flag = word.partition("=")[0]
        where = SECRET_OPTIONS.get(flag, ())
        if flag in SECRET_OPTIONS and (where is None or any(command.startswith(c) for c in where)):
            skip = "=" not in word
            continue
        kept.append(word)
    return shlex.join(kept)


class Shell(cmd.Cmd):
    intro = "Strongroom CLI. 'help' lists the commands, 'help <command>' explains one, Tab completes, 'quit' leaves."

    def __init__(self, group: click.Group, ctx: Any) -> None:
        super().__init__()
        self.group = group
        self.ctx = ctx
        try:
            import readline

            readline.set_completer_delims(" \t\n")
            readline.set_auto_history(False)  # precmd adds each line, without its secrets
            if HISTORY.exists():  # an older history may hold secrets: they are dropped as it is read
                for old in HISTORY.read_text(errors="replace").splitlines():
                    kept = without_secrets(old)
                    if kept:
                        readline.add_history(kept)
            self._readline: Any = readline
        except (ImportError, OSError):
            self._readline = None

    @property
    def prompt(self) -> str:  # type: ignore[override]
        who = f"{self.ctx.username}@" if self.ctx.username else ""
        return f"{who}strongroom > "

    def _run(self, argv: list[str]) -> None:
        try:
            self.group.main(argv, prog_name="strongroom-cli", obj=self.ctx, standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
        except click.Abort:
            click.echo("Aborted")
        except SystemExit:
            pass  # a command answered error_code 1 and printed it
        except Exception as exc:  # the shell and its login outlive a command's failure
            click.echo(f"Error: {type(exc).__name__}: {exc}")

    @staticmethod
    def _split(line: str) -> list[str] | None:
        """The words of ``line`` as a POSIX shell splits them; ``None``, the error shown, when it cannot."""
        try:
            return shlex.split(line)
        except ValueError as exc:
            click.echo(f"Error: {exc}")
            return None

    def precmd(self, line: str) -> str:
        kept = without_secrets(line) if line.strip() and line != "EOF" else None  # "EOF": cmd's Ctrl-D
        if self._readline is not None and kept:
            self._readline.add_history(kept)
        return line

    def default(self, line: str) -> None:
        argv = self._split(line)
        if argv:
            self._run(argv)

    def emptyline(self) -> bool:
        return False

    def do_help(self, arg: str) -> None:
        words = self._split(arg)
        if words is not None:
            self._run([*words, "--help"])

    def do_quit(self, arg: str) -> bool:
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:  # cmd's name for end of input
        click.echo()
        return True

    def postloop(self) -> None:
        if self._readline is not None:
            try:
                HISTORY.touch(mode=0o600)
                HISTORY.chmod(0o600)
                self._readline.write_history_file(str(HISTORY))
            except OSError:
                pass

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        return [n + " " for n in [*self.group.commands, "help", "quit"] if n.startswith(text)]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return self._complete(line[:begidx], text)

    def complete_help(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return self._complete(line[len("help"):begidx], text)

    def _complete(self, before: str, text: str) -> list[str]:
        """Sub-command names after a group; option names after a command."""
        node: click.Command = self.group
        for word in shlex.split(before) if before.strip() else []:
            if isinstance(node, click.Group) and word in node.commands:
                node = node.commands[word]
        if isinstance(node, click.Group):
            names = list(node.commands)
        else:
            names = [opt for param in node.params for opt in getattr(param, "opts", []) if opt.startswith("-")]
            names += [c for param in node.params if isinstance(param, click.Argument)
                      and isinstance(param.type, click.Choice) for c in param.type.choices]
        return [n + " " for n in sorted(names) if n.startswith(text)]
