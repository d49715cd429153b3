"""``strongroom doctor``: check a client machine and say what to fix, a line per check.

The checks (:mod:`strongroom.cli.doctor_checks`) run in order: the agent's socket, the agent answering, p11-kit's
client module and module files, ``P11_KIT_SERVER_ADDRESS``, the client certificate, each HSM's clock, and the
mechanisms the installed p11-kit client carries. The exit code is 1 when any check fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from . import doctor_checks as checks
from .doctor_checks import FAIL, Finding
from .version_option import VersionedCommand

DEFAULT_CONFIG = Path("var/cluster.json")


def _config_paths(data: dict[str, Any], base: Path) -> dict[str, Path | None]:
    def path(key: str) -> Path | None:
        value = data.get(key)
        return (base / value) if isinstance(value, str) and value else None
    return {key: path(key) for key in ("client_cert", "client_key", "trust_anchor", "pkcs11_socket")}


def diagnose(config_file: Path, socket_path: Path | None, modules_dir: Path,
             environment: dict[str, str] | None = None) -> list[Finding]:
    """Run every check; the findings in order.

    Args:
        config_file: the SDK configuration (``cluster.json``); paths in it are relative to its folder.
        socket_path: the agent's socket; ``None``: ``pkcs11_socket`` of the configuration, else the socket
            ``P11_KIT_SERVER_ADDRESS`` names.
        modules_dir: p11-kit's module folder (``/etc/pkcs11/modules``).
        environment: the application's environment (this process's if ``None``).
    """
    from ..client.config import ClientConfig
    from ..errors import StrongroomError

    env = dict(os.environ if environment is None else environment)
    address = env.get("P11_KIT_SERVER_ADDRESS")
    try:
        data = json.loads(config_file.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return [Finding("config", FAIL, f"cannot read {config_file}: {getattr(exc, 'strerror', None) or exc}",
                        "pass --config with the cluster.json of strongroom up or strongroom owner issue-client")]
    paths = _config_paths(data, config_file.absolute().parent)  # compared with P11_KIT_SERVER_ADDRESS: absolute
    socket_path = (socket_path.absolute() if socket_path is not None else paths["pkcs11_socket"]) or (
        checks.address_path(address) if address else None)
    findings = checks.agent_socket(socket_path)
    if socket_path is not None and findings[-1].status != FAIL:
        findings += checks.agent_answers(socket_path)
    configured = data.get("pkcs11_module")
    module = checks.find_client_module(configured if isinstance(configured, str) else None)
    findings += checks.client_module(module)
    registry = checks.module_files(modules_dir, socket_path)
    findings += registry
    findings += checks.server_address(address, socket_path, registered=registry[0].status == checks.OK)
    implemented = None
    if paths["client_key"] is not None and not _may_read(paths["client_key"]):
        # an application's user needs only the socket: the client certificate and key are the agent's
        findings.append(Finding("certificate", checks.WARN, f"{paths['client_key']} is not readable by this user, "
                                "as it should be for an application (it needs only the agent's socket): the "
                                "certificate and the HSMs' clocks are checked by running strongroom doctor as the "
                                "agent's user", ""))
        findings += checks.carried_mechanisms(module, implemented)
        return findings
    findings += checks.certificate(paths["client_cert"], paths["client_key"], paths["trust_anchor"])
    try:
        config = ClientConfig.from_file(config_file)
    except StrongroomError as exc:
        findings.append(Finding("config", FAIL, f"{config_file}: {exc.message}", "fix the configuration"))
    else:
        clocks, implemented = checks.hsm_clocks(config)
        findings += clocks
    findings += checks.carried_mechanisms(module, implemented)
    return findings


def _may_read(path: Path) -> bool:
    """Whether this user may open ``path`` (a missing file counts as readable: the certificate check says so)."""
    try:
        path.open("rb").close()
    except PermissionError:
        return False
    except OSError:
        return True
    return True


def render(findings: list[Finding]) -> str:
    """One line per finding: ``status  check  detail``, then ``-> fix`` when there is one."""
    lines = []
    for f in findings:
        lines.append(f"{f.status:<4}  {f.check:<11}  {f.detail}")
        if f.fix:
            lines.append(f"{'':<4}  {'':<11}  -> {f.fix}")
    return "\n".join(lines)


@click.command(cls=VersionedCommand)
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              default=lambda: os.environ.get("STRONGROOM_CLUSTER") or str(DEFAULT_CONFIG),
              show_default="$STRONGROOM_CLUSTER or var/cluster.json", help="The cluster.json of this machine.")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), default=None,
              help="The agent's socket [default: pkcs11_socket of the configuration, else the one "
                   "P11_KIT_SERVER_ADDRESS names].")
@click.option("--modules-dir", type=click.Path(path_type=Path, file_okay=False), default=checks.MODULES_DIR,
              show_default=True, help="p11-kit's module folder.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {\"ok\": bool, \"checks\": [...]}.")
def doctor(config_file: Path, socket_path: Path | None, modules_dir: Path, as_json: bool) -> None:
    """Check this machine for PKCS#11 applications: the agent's socket (exists, this user may connect, the agent
    answers), p11-kit's client module and module files, P11_KIT_SERVER_ADDRESS, the client certificate
    (dates, issuer, key), the HSMs' clocks and the mechanisms the installed p11-kit client carries. Prints a
    line per check (ok, warn or fail, and what to fix); exits 1 if any check fails."""
    findings = diagnose(config_file, socket_path, modules_dir)
    failed = any(f.status == FAIL for f in findings)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [
            {"check": f.check, "status": f.status, "detail": f.detail, "fix": f.fix} for f in findings]}))
    else:
        click.echo(render(findings))
    if failed:
        raise SystemExit(1)
