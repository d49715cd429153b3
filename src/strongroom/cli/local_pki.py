"""The local PKI of ``strongroom up``: the owner CA it makes (``owner-ca.crt``/``.key``), the client certificates
it issues from it (the agent's and the command line's in ``clients/``, and new application hosts'), and the
control plane's own HTTPS CA (``control-ca``). Keys are written 0600."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import click


def owner_ca(folder: Path) -> tuple[Any, Any, Path]:
    """The local owner CA that signs the cluster certificate (made once; key 0600)."""
    from ..trust.ca import CertificateAuthority

    if (folder / f"{OWNER_CA}.crt").exists():
        ca = CertificateAuthority.load(folder, OWNER_CA, days=3650)
    else:
        ca = CertificateAuthority(folder, OWNER_CA, days=3650)
    return ca.cert, ca.key, ca.issued.cert


CLIENTS = "clients"  # the client certificates up issues from the owner CA, in the data directory
OWNER_CA = "owner-ca"


def client_certificates(data_dir: Path) -> dict[str, str]:
    """The agent's and the command line's client certificates from the owner CA in ``data_dir`` (issued once,
    keys 0600), as ``cluster.json`` names them: paths relative to ``data_dir``."""
    from ..trust.ca import CertificateAuthority
    from ..vendor import AGENT_UNIT

    folder = data_dir / CLIENTS
    names = {"client": "agent", "cli": "cli"}
    if not all((folder / f"{n}.crt").is_file() and (folder / f"{n}.key").is_file() for n in names.values()):
        folder.mkdir(mode=0o700, exist_ok=True)
        owner = CertificateAuthority.load(data_dir, OWNER_CA, days=825)
        for name in names.values():  # the agent's marks it as one: the nodes trust the application it names
            owner.issue(name, server=False, folder=folder, unit=AGENT_UNIT if name == "agent" else None)
    fields: dict[str, str] = {}
    for field, name in names.items():
        fields[f"{field}_cert"], fields[f"{field}_key"] = f"{CLIENTS}/{name}.crt", f"{CLIENTS}/{name}.key"
    return fields


def issue_client(data_dir: Path, out: Path, name: str, days: int) -> dict[str, str]:
    """A client certificate for a new application host from the owner CA in ``data_dir``: ``NAME.crt`` and
    ``NAME.key`` (0600) in ``out``, beside a copy of the owner CA (``owner-ca.crt``, the trust anchor) and, once
    ``data_dir`` holds a ``cluster.json``, a ``cluster.json`` of its endpoints with this certificate (what the
    SDK, the agent and the CLI read). Returns the written paths.

    Raises:
        click.ClickException: no owner CA in ``data_dir``, or ``out`` already holds ``NAME.key``.
    """
    from ..trust.ca import CertificateAuthority

    if not (data_dir / f"{OWNER_CA}.key").is_file():
        raise click.ClickException(f"{data_dir} holds no owner CA ({OWNER_CA}.crt and {OWNER_CA}.key): give the "
                                   "--data-dir of strongroom up")
    if (out / f"{name}.key").exists():
        raise click.ClickException(f"{out / (name + '.key')} exists: choose another --name or --out")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    issued = CertificateAuthority.load(data_dir, OWNER_CA, days=days).issue(name, server=False, folder=out)
    anchor = out / f"{OWNER_CA}.crt"
    anchor.write_bytes((data_dir / f"{OWNER_CA}.crt").read_bytes())
    written = {"client_cert": str(issued.cert), "client_key": str(issued.key), "trust_anchor": str(anchor)}
    cluster_file = data_dir / "cluster.json"
    if cluster_file.is_file():
        described = json.loads(cluster_file.read_text())
        config = {"endpoints": described.get("endpoints", []), "trust_anchor": anchor.name,
                  "client_cert": issued.cert.name, "client_key": issued.key.name}
        if described.get("server_name"):
            config["server_name"] = described["server_name"]
        (out / "cluster.json").write_text(json.dumps(config, indent=2) + "\n")
        written["config"] = str(out / "cluster.json")
    return written


def control_tls(data_dir: Path) -> list[str]:
    """The control plane's HTTPS certificate from the local control-plane CA (made once; keys 0600): the options
    that give it to ``strongroom control``. A CA of its own, not the owner CA, so that the control plane's key
    cannot pass for an HSM's."""
    from ..trust.ca import CertificateAuthority

    if not (data_dir / "control-plane.key").exists():
        CertificateAuthority(data_dir, "control-ca", days=3650).issue(
            "control-plane", server=True, hosts=("localhost", "127.0.0.1", "::1"))
    return ["--tls-cert", str(data_dir / "control-plane.crt"), "--tls-key", str(data_dir / "control-plane.key")]


def sign_csr(csr_pem: str, ca_cert: Any, ca_key: Any) -> str:
    """The cluster's CSR signed by the owner CA as a CA certificate (``CA:TRUE``, path length 0): it issues each
    HSM's TLS certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    csr = x509.load_pem_x509_csr(csr_pem.encode())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()
