"""The replication channel of real node processes: bound to the given address only, mutual TLS 1.3 with fleet
certificates before anything is read, frames capped (replication/transport.py)."""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.trust.ca import CertificateAuthority
from strongroom.trust.fleet import IDENTITY_CERT, IDENTITY_KEY, issue_appliance, provision

from .replicas import running

STREAM_BYTES = 64 * 1024 * 1024
RSS_SLACK_KIB = 5 * 1024


@pytest.fixture(scope="module")
def trio(pki, tmp_path_factory):
    with running(tmp_path_factory.mktemp("channel"), pki, 3) as cluster:
        yield cluster


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _context(cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts any server (the peer under test is the one that must check) and presents
    ``cert`` when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm0")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "self.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (directory / "self.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / "self.crt", directory / "self.key"


def _handshake(address: str, ctx: ssl.SSLContext) -> str:
    """``accepted`` when the member keeps the TLS session open once the handshake is over, else how it refused.
    (In TLS 1.3 the client finishes first; a server that refuses its certificate answers with an alert.)"""
    with socket.create_connection(_split(address), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.settimeout(1.0)
                data = tls.recv(1)
        except TimeoutError:
            return "accepted"
        except (ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc}"
    return f"refused: closed ({data!r})"


def _stream_after_length(sock: socket.socket | ssl.SSLSocket, length_prefix: bytes) -> int:
    """Send ``length_prefix`` and then up to STREAM_BYTES; returns how many bytes were taken before the peer
    closed the connection."""
    sent = 0
    chunk = bytes(1024 * 1024)
    try:
        sock.sendall(length_prefix)
        while sent < STREAM_BYTES:
            sock.sendall(chunk)
            sent += len(chunk)
    except (OSError, ssl.SSLError):
        pass
    return sent


def test_each_replication_port_listens_on_the_given_address_only(trio):
    for proc in trio.nodes:
        _, port = _split(proc.raft)
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                                   check=True).stdout.split("\n")
        local = sorted(line.split()[3] for line in listening if line.strip())
        assert local == [proc.raft], listening


def test_a_peer_without_a_fleet_certificate_is_refused_at_the_handshake(trio, tmp_path):
    rogue = CertificateAuthority(tmp_path, "rogue-fleet")
    provision(tmp_path / "rogue", rogue.issued.cert, rogue.issued.key, "hsm9")
    provision(tmp_path / "genuine", trio.fleet.issued.cert, trio.fleet.issued.key, "hsm9")
    issue_appliance(trio.fleet.issued.cert, trio.fleet.issued.key, tmp_path / "app.key", tmp_path / "app.crt")
    target = trio.nodes[1].raft
    outcomes = {
        "no certificate": _handshake(target, _context()),
        "self-signed": _handshake(target, _context(*_self_signed(tmp_path / "self"))),
        "another CA": _handshake(target, _context(tmp_path / "rogue" / IDENTITY_CERT,
                                                  tmp_path / "rogue" / IDENTITY_KEY)),
        "the appliance": _handshake(target, _context(tmp_path / "app.crt", tmp_path / "app.key")),
        "a fleet HSM": _handshake(target, _context(tmp_path / "genuine" / IDENTITY_CERT,
                                                   tmp_path / "genuine" / IDENTITY_KEY)),
    }
    assert {k: v.startswith("refused") for k, v in outcomes.items()} == {
        "no certificate": True, "self-signed": True, "another CA": True, "the appliance": True,
        "a fleet HSM": False}, outcomes
    assert "CERTIFICATE_REQUIRED" in outcomes["no certificate"] or "certificate required" in outcomes[
        "no certificate"], outcomes


def test_a_2_gib_length_prefix_buffers_nothing_and_calls_no_election(trio, tmp_path):
    provision(tmp_path / "genuine", trio.fleet.issued.cert, trio.fleet.issued.key, "hsm9")
    fleet_peer = _context(tmp_path / "genuine" / IDENTITY_CERT, tmp_path / "genuine" / IDENTITY_KEY)
    leader = trio.leader()
    follower = next(p for p in trio.nodes if p is not leader)
    term = trio.status(leader)["term"]
    for target in (leader, follower):
        rss_before = _rss_kib(target.process.pid)
        # Unauthenticated: the length of pysyncobj's frames (native order), then a stream.
        with socket.create_connection(_split(target.raft), timeout=5) as raw:
            unauthenticated = _stream_after_length(raw, (2**31 - 1).to_bytes(4, "little"))
        # Authenticated with a genuine fleet certificate: a frame header over the cap, then a stream.
        with socket.create_connection(_split(target.raft), timeout=5) as raw, \
                fleet_peer.wrap_socket(raw) as tls:
            authenticated = _stream_after_length(tls, (2**31 - 1).to_bytes(4, "big"))
        time.sleep(0.5)
        grown_kib = _rss_kib(target.process.pid) - rss_before
        assert unauthenticated < STREAM_BYTES and authenticated < STREAM_BYTES, (unauthenticated, authenticated)
        assert grown_kib < RSS_SLACK_KIB, f"{target.raft} grew by {grown_kib} KiB"
    time.sleep(2.5)  # longer than an election timeout
    for proc in trio.nodes:
        status = trio.status(proc)
        assert (status["term"], status["leader"]) == (term, leader.raft), status
