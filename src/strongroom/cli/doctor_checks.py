"""The checks of ``strongroom doctor``: what a PKCS#11 application on this machine needs to reach the cluster.

Each check returns :class:`Finding` records (``ok``, ``warn`` or ``fail``, what was found and what to fix). They
read the machine as an application would meet it: the agent's socket (it exists, this user may connect, the agent
answers), p11-kit's client module and module files, ``P11_KIT_SERVER_ADDRESS``, the client certificate of
``cluster.json``, the HSMs' clocks and the mechanisms the installed p11-kit client carries.
"""

from __future__ import annotations

import asyncio
import datetime
import grp
import os
import pwd
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..vocab import CKM, CKR, name_of

OK, WARN, FAIL = "ok", "warn", "fail"
EXPIRY_WARNING_DAYS = 30
SKEW_WARN_S = 5.0
SKEW_FAIL_S = 300.0
CLIENT_MODULES = ("/usr/lib/*/pkcs11/p11-kit-client.so", "/usr/lib64/pkcs11/p11-kit-client.so",
                  "/usr/lib/pkcs11/p11-kit-client.so")
MODULES_DIR = Path("/etc/pkcs11/modules")
_HANDSHAKE = b"PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-1"
_GENERATIONS = {0: "p11-kit 0.24 or older", 1: "p11-kit 0.25.0-0.25.5", 2: "p11-kit 0.25.6 or later"}


@dataclass(frozen=True)
class Finding:
    """The outcome of one check.

    Attributes:
        check: the check's name (``socket``, ``agent``, ``module``, ``module-file``, ``address``, ``certificate``,
            ``clock``, ``mechanisms``).
        status: ``ok``, ``warn`` or ``fail``.
        detail: what was found.
        fix: what to do about it (empty when ``ok``).
    """

    check: str
    status: str
    detail: str
    fix: str = ""


def agent_socket(path: Path | None) -> list[Finding]:
    """The agent's socket exists, is a socket and this user may connect to it."""
    if path is None:
        return [Finding("socket", FAIL, "no agent socket is known",
                        "pass --socket PATH, or name it as pkcs11_socket in cluster.json")]
    try:
        info = path.stat()
    except FileNotFoundError:
        return [Finding("socket", FAIL, f"{path} does not exist: the agent is not running there",
                        f"start the agent: strongroom client --config cluster.json --socket {path} "
                        "(strongroom up starts one)")]
    except PermissionError:
        return [Finding("socket", FAIL, f"{path} cannot be reached: a folder above it is closed to this user",
                        "open the socket's folder to this user (x permission), or move the socket")]
    if not stat.S_ISSOCK(info.st_mode):
        return [Finding("socket", FAIL, f"{path} is not a socket", "point --socket at the agent's socket")]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
        except PermissionError:
            return [Finding("socket", FAIL, f"{path} refuses this user ({_user()}): it is mode "
                            f"{stat.S_IMODE(info.st_mode):04o}, owner {_owner(info.st_uid)}, group "
                            f"{_group(info.st_gid)}", "run the agent with --socket-group GROUP (mode 0660) and "
                            "add this user to GROUP, or run the application as the agent's user")]
        except OSError as exc:
            return [Finding("socket", FAIL, f"{path}: nothing answers ({exc.strerror or exc}): a stale socket "
                            "of a stopped agent", "start the agent again")]
    mode = stat.S_IMODE(info.st_mode)
    others = ("other users cannot connect (the agent's --socket-group opens it to a group)" if not mode & 0o066
              else f"group {_group(info.st_gid)} may connect" if not mode & 0o006 else "every user may connect")
    return [Finding("socket", OK, f"{path} accepts this user ({_user()}); mode {mode:04o}, owner "
                    f"{_owner(info.st_uid)}: {others}")]


def agent_answers(path: Path) -> list[Finding]:
    """The agent speaks p11-kit's protocol and reaches the cluster: ``C_GetTokenInfo`` through it."""
    from ..pkcs11 import wire

    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(path))
            sock.sendall(b"\x00")
            if len(sock.recv(1)) != 1:
                raise ConnectionError("the agent closed the connection")
            frames = wire.FrameReader()

            def call(code: int, call_id: int, signature: str, args: bytes) -> bytes:
                body = wire.Writer().u32(call_id).data(signature.encode()).bytes() + args
                sock.sendall(wire.encode_frame(code, body, b"doctor"))
                while True:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("the agent closed the connection")
                    for _, _, reply in frames.feed(data):
                        return reply or b""

            call(0x10, 1, "ayyay", wire.Writer().byte_array(_HANDSHAKE).byte(0).byte_array(b"\x00").bytes())
            reply = call(0x11, 6, "u", wire.Writer().u64(1).bytes())
    except (OSError, ConnectionError, wire.WireError) as exc:
        return [Finding("agent", FAIL, f"the agent does not answer: {exc}", "restart the agent; read its log")]
    reader = wire.Reader(reply)
    if reader.u32() == 0:
        reader.signature()
        code = reader.u64()
        return [Finding("agent", FAIL, f"the agent answers but no HSM serves it: C_GetTokenInfo answered "
                        f"{name_of(CKR, code)}", "read the agent's log (standard error): it names the refusal; "
                        "check the HSMs' endpoints and the certificate below")]
    reader.signature()
    label = (reader.data() or b"").decode(errors="replace").rstrip()
    return [Finding("agent", OK, f"the agent answers and reaches the cluster (token {label!r})")]


def find_client_module(configured: str | None) -> Path | None:
    """``p11-kit-client.so``: where ``pkcs11_module`` of cluster.json says, else in the usual folders."""
    candidates = [Path(configured)] if configured else []
    for pattern in CLIENT_MODULES:
        candidates += sorted(Path("/").glob(pattern.lstrip("/")))
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def client_module(module: Path | None) -> list[Finding]:
    """p11-kit's client module ``p11-kit-client.so`` is installed."""
    if module is not None:
        return [Finding("module", OK, f"p11-kit's client module: {module}")]
    return [Finding("module", FAIL, "p11-kit's client module p11-kit-client.so is not installed",
                    "install it (Debian and Ubuntu: apt install p11-kit-modules; Fedora: p11-kit-server)")]


def module_files(folder: Path, path: Path | None) -> list[Finding]:
    """A p11-kit module file (``/etc/pkcs11/modules/*.module``) whose ``remote:`` line names the agent's socket,
    for applications that load ``p11-kit-proxy.so`` (OpenSSL's engine and GnuTLS by default)."""
    remotes: dict[Path, str] = {}
    for file in sorted(folder.glob("*.module")) if folder.is_dir() else []:
        try:
            lines = file.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key.strip() == "remote":
                remotes[file] = value.strip()
    ours = [file for file, remote in remotes.items() if path is not None and address_path(remote) == path]
    if ours:
        return [Finding("module-file", OK, f"{ours[0]} names the agent's socket")]
    line = f"remote: unix:path={path or 'SOCKET'}"
    if remotes:
        others = ", ".join(f"{file} ({remote})" for file, remote in remotes.items())
        return [Finding("module-file", WARN, f"module files name other servers: {others}",
                        f"point the strongroom one at the agent: {line}")]
    return [Finding("module-file", WARN, f"no module file in {folder} names the agent: applications that load "
                    "p11-kit-proxy.so (OpenSSL's engine, GnuTLS) see the token only with P11_KIT_SERVER_ADDRESS",
                    f"write {folder / 'strongroom.module'} with the line: {line}")]


def server_address(value: str | None, path: Path | None, registered: bool) -> list[Finding]:
    """``P11_KIT_SERVER_ADDRESS`` is set, in a form p11-kit accepts, and names the agent's socket."""
    wanted = f"unix:path={path}" if path is not None else "unix:path=SOCKET"
    if not value:
        status = WARN if registered else FAIL
        also = (" (applications loading p11-kit-proxy.so find the token through the module file)"
                if registered else "")
        return [Finding("address", status, "P11_KIT_SERVER_ADDRESS is not set: p11-kit-client.so then connects to "
                        "$XDG_RUNTIME_DIR/p11-kit/pkcs11 and the application sees no token" + also,
                        f"export P11_KIT_SERVER_ADDRESS={wanted} in the application's environment "
                        "(nginx: also env P11_KIT_SERVER_ADDRESS; in its configuration)")]
    named = address_path(value)
    if named is None:
        return [Finding("address", FAIL, f"P11_KIT_SERVER_ADDRESS={value!r:.200} is not unix:path=/absolute/path: "
                        "p11-kit's client refuses it (C_GetFunctionList fails)",
                        f"export P11_KIT_SERVER_ADDRESS={wanted}")]
    if path is not None and named != path:
        return [Finding("address", FAIL, f"P11_KIT_SERVER_ADDRESS names {named}, the agent serves {path}",
                        f"export P11_KIT_SERVER_ADDRESS={wanted}")]
    return [Finding("address", OK, f"P11_KIT_SERVER_ADDRESS={value}")]


def certificate(cert_file: Path | None, key_file: Path | None, anchor_file: Path | None,
                now: datetime.datetime | None = None) -> list[Finding]:
    """The client certificate of ``cluster.json``: in its dates and not near the end of them, issued by the trust
    anchor, and its key the certificate's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if cert_file is None or key_file is None or anchor_file is None:
        return [Finding("certificate", FAIL, "cluster.json names no client certificate (client_cert, client_key) "
                        "or no trust_anchor", "issue one: strongroom owner issue-client --out DIR")]
    try:
        chain = x509.load_pem_x509_certificates(cert_file.read_bytes())
        anchors = x509.load_pem_x509_certificates(anchor_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return [Finding("certificate", FAIL, f"cannot read the client certificate, its key or the trust anchor: "
                        f"{getattr(exc, 'strerror', None) or exc}", "check the paths in cluster.json and that this "
                        "user may read them")]
    leaf, now = chain[0], now or datetime.datetime.now(datetime.UTC)
    subject = leaf.subject.rfc4514_string()
    if leaf.not_valid_before_utc > now:
        return [Finding("certificate", FAIL, f"{cert_file} ({subject}) is not valid before "
                        f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", "check this machine's clock")]
    if leaf.not_valid_after_utc <= now:
        return [Finding("certificate", FAIL, f"{cert_file} ({subject}) expired on "
                        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: every HSM refuses it",
                        "issue a new one: strongroom owner issue-client --out DIR")]
    if not _issued_by(chain, anchors):
        return [Finding("certificate", FAIL, f"{cert_file} ({subject}) is not issued by the trust anchor "
                        f"{anchor_file} (its issuer: {leaf.issuer.rfc4514_string()}): every HSM refuses it",
                        "use a certificate from the cluster's owner CA: strongroom owner issue-client --out DIR")]
    mine = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, mine)
            != leaf.public_key().public_bytes(serialization.Encoding.DER, mine)):
        return [Finding("certificate", FAIL, f"{key_file} is not the key of {cert_file}",
                        "name the certificate's own key as client_key in cluster.json")]
    left = leaf.not_valid_after_utc - now
    if left < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        return [Finding("certificate", WARN, f"{cert_file} ({subject}) expires in {left.days} days "
                        f"({leaf.not_valid_after_utc:%Y-%m-%d} UTC)", "issue a new one before then: strongroom "
                        "owner issue-client --out DIR")]
    return [Finding("certificate", OK, f"{cert_file} ({subject}), issued by the trust anchor, valid until "
                    f"{leaf.not_valid_after_utc:%Y-%m-%d} UTC, with its key")]


def hsm_clocks(config: Any) -> tuple[list[Finding], list[int] | None]:
    """Each HSM's clock against this machine's (from the hello every HSM answers with its time), and the
    mechanisms the cluster implements (``CKM`` values, ``None`` if no HSM answered)."""
    return asyncio.run(_hsm_clocks(config))


async def _hsm_clocks(config: Any) -> tuple[list[Finding], list[int] | None]:
    from ..client.connection import open_connection
    from ..errors import StrongroomError
    from ..protocol.tls import client_context

    try:
        context = client_context(config.trust_anchor, cert_file=config.client_cert, key_file=config.client_key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return [Finding("clock", FAIL, f"no HSM can be asked: TLS cannot use the configuration's certificates "
                        f"({getattr(exc, 'reason', None) or exc})", "fix the certificate (see above)")], None
    findings: list[Finding] = []
    mechanisms: list[int] | None = None
    for endpoint in config.endpoints:
        sent = time.time()
        try:
            conn = await open_connection(endpoint, context, server_name=config.server_name, timeout_s=10)
        except StrongroomError as exc:
            findings.append(Finding("clock", FAIL, f"HSM {endpoint} cannot be reached: {exc.message}",
                                    "check the endpoint, the HSM and the client certificate above"))
            continue
        try:
            received = time.time()
            hsm_time = conn.node.get("time")
            if mechanisms is None:
                response = await conn.request("mechanism_list", (), {}, timeout_s=10)
                mechanisms = [int(row[0]) for row in response.value] if not response.ckr else None
        except StrongroomError:
            pass
        finally:
            conn.close()
        if not isinstance(hsm_time, (int, float)):
            findings.append(Finding("clock", WARN, f"HSM {endpoint} does not report its clock", "upgrade the HSM"))
            continue
        skew = hsm_time - (sent + received) / 2
        status = FAIL if abs(skew) >= SKEW_FAIL_S else WARN if abs(skew) >= SKEW_WARN_S else OK
        findings.append(Finding("clock", status, f"HSM {endpoint}'s clock is {abs(skew):.1f} s "
                                f"{'ahead of' if skew > 0 else 'behind'} this machine's",
                                "" if status == OK else "synchronise the clocks (NTP): certificates and signed "
                                "owner requests are checked against them"))
    return findings, mechanisms


def carried_mechanisms(module: Path | None, implemented: list[int] | None) -> list[Finding]:
    """Which of the cluster's mechanisms the installed p11-kit client carries: the protocol version it offers
    (its first byte to a server) decides (see docs/pkcs11.md)."""
    from ..pkcs11 import mechanism_codec

    if module is None:
        return [Finding("mechanisms", FAIL, "no p11-kit client module to ask", "install p11-kit's client module")]
    version = client_protocol_version(module)
    if version is None:
        return [Finding("mechanisms", WARN, f"{module} did not connect to a test socket: its protocol version "
                        "is unknown", "run an application with P11_KIT_SERVER_ADDRESS set and read the agent's log")]
    generation = _GENERATIONS.get(version, f"protocol version {version}")
    if implemented is None:
        return [Finding("mechanisms", WARN, f"{module} is {generation} (protocol version {version}); no HSM "
                        "answered, so the cluster's mechanisms are unknown", "see the clock and config checks")]
    carried = set(mechanism_codec.forwardable(version, implemented))
    left_out = sorted(name_of(CKM, m) for m in implemented if m not in carried)
    detail = (f"{module} is {generation} (protocol version {version}): it carries {len(carried)} of the "
              f"cluster's {len(implemented)} mechanisms; not through PKCS#11: {', '.join(left_out) or 'none'}")
    return [Finding("mechanisms", OK, detail)]


_PROBE = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
functions = ctypes.POINTER(ctypes.c_void_p)()
if lib.C_GetFunctionList(ctypes.byref(functions)) == 0:
    initialize = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)(functions[1])
    if initialize(None) == 0:
        ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)(functions[2])(None)
"""


def client_protocol_version(module: Path) -> int | None:
    """The p11-kit RPC protocol version ``module`` offers: it is loaded in a child process whose
    ``P11_KIT_SERVER_ADDRESS`` names a socket of this function, which reads the client's first byte."""
    offered: list[int] = []
    with tempfile.TemporaryDirectory() as folder, socket.socket(socket.AF_UNIX) as server:
        probe = Path(folder) / "probe.sock"
        server.bind(str(probe))
        server.listen(1)
        server.settimeout(20)

        def accept() -> None:
            try:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(10)
                    offered.extend(conn.recv(1))
            except OSError:
                pass

        reader = threading.Thread(target=accept, daemon=True)
        reader.start()
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={probe}"}
        try:
            subprocess.run([sys.executable, "-c", _PROBE, str(module)], env=env, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        reader.join(5)
    return offered[0] if offered else None


def _issued_by(chain: list[Any], anchors: list[Any]) -> bool:
    """Whether ``chain`` (leaf first, then intermediates) leads to one of ``anchors`` by signatures."""
    current = chain[0]
    for step in [*chain[1:], None]:
        if any(_signed_by(current, anchor) for anchor in anchors):
            return True
        if step is None or not _signed_by(current, step):
            return False
        current = step
    return False


def _signed_by(certificate: Any, issuer: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def address_path(value: str) -> Path | None:
    """The socket a ``P11_KIT_SERVER_ADDRESS`` value names (``unix:path=/absolute``, %-encoded), else ``None``."""
    if not value.startswith("unix:path="):
        return None
    path = urllib.parse.unquote(value[len("unix:path="):])
    return Path(path) if path.startswith("/") else None


def _user() -> str:
    return _owner(os.getuid())


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
