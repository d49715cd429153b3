"""``strongroom doctor`` on a client machine: healthy, then with each fault an application meets made on purpose
(the agent's socket missing, P11_KIT_SERVER_ADDRESS unset or wrong, an expired or foreign client certificate, a
key that is not the certificate's), each named exactly with what to fix."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ..cluster.nodes import TEST_HASH_MEMORY_KIB
from ..cluster.pki import CA, client_certificate
from .conftest import P11_KIT_CLIENT, serving_agent

TOKEN = "cluster-test0000001"


def _doctor(config: Path, env: dict[str, str], *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    done = subprocess.run([sys.executable, "-m", "strongroom", "doctor", "--config", str(config), "--json", *extra],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode in (0, 1) and done.stdout.startswith("{"), done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] == (done.returncode == 0)
    found: dict[str, dict[str, str]] = {}
    for check in out["checks"]:
        found.setdefault(check["check"], check)  # the first finding of each check (one per HSM for "clock")
    return done.returncode, found


def _env(address: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "P11_KIT_SERVER_ADDRESS"}
    return env if address is None else {**env, "P11_KIT_SERVER_ADDRESS": address}


@pytest.fixture()
def machine(node, agent, tmp_path):
    """A client machine's cluster.json naming the agent's socket, and an empty p11-kit module folder."""
    _, config = node
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({**config, "pkcs11_socket": str(agent)}))
    (tmp_path / "modules").mkdir()
    return path, agent, tmp_path / "modules"


def test_a_healthy_machine_passes_and_says_what_it_found(machine):
    config, agent, modules = machine
    code, found = _doctor(config, _env(f"unix:path={agent}"), "--modules-dir", str(modules))
    assert code == 0
    assert {name: check["status"] for name, check in found.items()} == {
        "socket": "ok", "agent": "ok", "module": "ok", "module-file": "warn", "address": "ok",
        "certificate": "ok", "clock": "ok", "mechanisms": "ok"}
    me = pwd.getpwuid(os.getuid()).pw_name
    assert found["socket"]["detail"] == f"{agent} accepts this user ({me}); mode 0600, owner {me}: other users " \
                                        "cannot connect (the agent's --socket-group opens it to a group)"
    assert found["agent"]["detail"] == f"the agent answers and reaches the cluster (token '{TOKEN}')"
    assert found["module"]["detail"] == f"p11-kit's client module: {P11_KIT_CLIENT}"
    assert found["module-file"]["fix"] == f"write {modules / 'strongroom.module'} with the line: remote: " \
                                          f"unix:path={agent}"
    cert = json.loads(config.read_text())["client_cert"]
    assert found["certificate"]["detail"].startswith(f"{cert} (CN=client), issued by the trust anchor, valid until ")
    assert found["clock"]["detail"].endswith("this machine's")
    assert found["mechanisms"]["detail"].startswith(
        f"{P11_KIT_CLIENT} is p11-kit 0.24 or older (protocol version 0): it carries ")
    assert "CKM_EDDSA" in found["mechanisms"]["detail"] and "CKM_AES_GCM" in found["mechanisms"]["detail"]


def test_a_module_file_naming_the_agent_stands_for_the_variable(machine):
    config, agent, modules = machine
    (modules / "strongroom.module").write_text(f"remote: unix:path={agent}\n")
    code, found = _doctor(config, _env(None), "--modules-dir", str(modules))
    assert code == 0
    assert found["module-file"] == {"check": "module-file", "status": "ok", "fix": "",
                                    "detail": f"{modules / 'strongroom.module'} names the agent's socket"}
    assert found["address"]["status"] == "warn"


def test_the_variable_unset_or_naming_another_socket_fails(machine):
    config, agent, modules = machine
    code, found = _doctor(config, _env(None), "--modules-dir", str(modules))
    assert code == 1
    assert found["address"] == {
        "check": "address", "status": "fail",
        "detail": "P11_KIT_SERVER_ADDRESS is not set: p11-kit-client.so then connects to "
                  "$XDG_RUNTIME_DIR/p11-kit/pkcs11 and the application sees no token",
        "fix": f"export P11_KIT_SERVER_ADDRESS=unix:path={agent} in the application's environment "
               "(nginx: also env P11_KIT_SERVER_ADDRESS; in its configuration)"}
    code, found = _doctor(config, _env("unix:path=/run/elsewhere.sock"), "--modules-dir", str(modules))
    assert code == 1
    assert found["address"]["detail"] == f"P11_KIT_SERVER_ADDRESS names /run/elsewhere.sock, the agent serves {agent}"
    code, found = _doctor(config, _env("tcp:127.0.0.1:9"), "--modules-dir", str(modules))
    assert found["address"]["detail"].startswith("P11_KIT_SERVER_ADDRESS='tcp:127.0.0.1:9' is not unix:path=")


def test_a_missing_socket_fails(machine, tmp_path):
    config, _, modules = machine
    gone = tmp_path / "gone.sock"
    code, found = _doctor(config, _env(f"unix:path={gone}"), "--modules-dir", str(modules), "--socket", str(gone))
    assert code == 1
    assert found["socket"] == {"check": "socket", "status": "fail",
                               "detail": f"{gone} does not exist: the agent is not running there",
                               "fix": f"start the agent: strongroom client --config cluster.json --socket {gone} "
                                      "(strongroom up starts one)"}
    assert "agent" not in found


def test_a_certificate_near_its_end_warns(machine, pki, tmp_path):
    config, agent, modules = machine
    issued = client_certificate(tmp_path, "short", issuer=pki["ca"].issued, days=10)
    config.write_text(json.dumps({**json.loads(config.read_text()), "client_cert": str(issued.cert),
                                  "client_key": str(issued.key)}))
    code, found = _doctor(config, _env(f"unix:path={agent}"), "--modules-dir", str(modules))
    assert code == 0
    assert found["certificate"]["status"] == "warn"
    assert found["certificate"]["detail"].startswith(f"{issued.cert} (CN=short) expires in 9 days (")
    assert found["certificate"]["fix"] == "issue a new one before then: strongroom owner issue-client --out DIR"


@pytest.mark.parametrize("fault", ["expired", "foreign", "other-key"])
def test_a_bad_client_certificate_fails(machine, pki, fault, tmp_path):
    config, agent, modules = machine
    data = json.loads(config.read_text())
    if fault == "expired":
        issued = client_certificate(tmp_path, "expired", issuer=pki["ca"].issued, days=-1)
    elif fault == "foreign":
        issued = client_certificate(tmp_path, "foreign", issuer=CA(tmp_path, "foreign-ca").issued)
    else:
        issued = client_certificate(tmp_path, "mine", issuer=pki["ca"].issued)
        issued = type(issued)(issued.cert, Path(data["client_key"]))
    config.write_text(json.dumps({**data, "client_cert": str(issued.cert), "client_key": str(issued.key)}))
    code, found = _doctor(config, _env(f"unix:path={agent}"), "--modules-dir", str(modules))
    assert code == 1
    certificate = found["certificate"]
    assert certificate["status"] == "fail"
    if fault == "expired":
        assert certificate["detail"].startswith(f"{issued.cert} (CN=expired) expired on ")
        assert certificate["detail"].endswith(" UTC: every HSM refuses it")
        assert certificate["fix"] == "issue a new one: strongroom owner issue-client --out DIR"
    elif fault == "foreign":
        assert certificate["detail"] == (f"{issued.cert} (CN=foreign) is not issued by the trust anchor "
                                         f"{data['trust_anchor']} (its issuer: CN=foreign-ca): every HSM refuses it")
    else:
        assert certificate["detail"] == f"{issued.key} is not the key of {issued.cert}"
    assert found["clock"]["status"] == "fail"
    if fault == "other-key":
        assert found["clock"]["detail"] == ("no HSM can be asked: TLS cannot use the configuration's certificates "
                                            "(KEY_VALUES_MISMATCH)")
    else:  # the HSM refuses the handshake
        assert found["clock"]["detail"].startswith(f"HSM {data['endpoints'][0]} cannot be reached: ")


@pytest.mark.slow
def test_doctor_passes_on_a_healthy_strongroom_up(tmp_path):
    data = tmp_path / "var"
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "up", "--data-dir", str(data), "--hsms", "1",
                                "--json", "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        for line in process.stdout:
            if json.loads(line).get("ready"):
                break
        summary = json.loads((data / "cluster.json").read_text())
        modules = tmp_path / "modules"
        modules.mkdir()
        (modules / "strongroom.module").write_text(f"remote: unix:path={summary['pkcs11_socket']}\n")
        env = _env(f"unix:path={summary['pkcs11_socket']}")
        code, found = _doctor(data / "cluster.json", env, "--modules-dir", str(modules))
        assert code == 0
        assert {check["status"] for check in found.values()} == {"ok"}, found
        assert found["agent"]["detail"] == \
            f"the agent answers and reaches the cluster (token '{summary['cluster_id']}')"
        done = subprocess.run([sys.executable, "-m", "strongroom", "doctor", "--config", str(data / "cluster.json"),
                               "--modules-dir", str(modules)], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0
        lines = done.stdout.splitlines()
        assert [line.split()[:2] for line in lines] == [
            ["ok", name] for name in ("socket", "agent", "module", "module-file", "address", "certificate", "clock",
                                      "mechanisms")]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)


def test_a_stale_socket_and_an_agent_without_hsms_fail(machine, node, tmp_path):
    config, _, modules = machine
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stale))  # left behind by a process that stopped: nothing listens
    code, found = _doctor(config, _env(f"unix:path={stale}"), "--modules-dir", str(modules), "--socket", str(stale))
    assert code == 1
    assert found["socket"]["detail"] == f"{stale}: nothing answers (Connection refused): a stale socket of a " \
                                        "stopped agent"
    folder = tmp_path / "lonely"
    folder.mkdir()
    with serving_agent({**node[1], "endpoints": [f"127.0.0.1:{_free_port()}"], "timeout_s": 2}, folder) as lonely:
        code, found = _doctor(config, _env(f"unix:path={lonely}"), "--modules-dir", str(modules), "--socket",
                              str(lonely))
    assert code == 1
    assert found["socket"]["status"] == "ok"
    assert found["agent"] == {
        "check": "agent", "status": "fail",
        "detail": "the agent answers but no HSM serves it: C_GetTokenInfo answered CKR_DEVICE_ERROR",
        "fix": "read the agent's log (standard error): it names the refusal; check the HSMs' endpoints and the "
               "certificate below"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)


@pytest.mark.parametrize("offset,status", [("+10m", "fail"), ("+20s", "warn")])
def test_a_clock_off_the_hsms_is_named(machine, offset, status):
    """This machine's clock moved (libfaketime, Debian's faketime) against the HSM's."""
    if FAKETIME is None:
        pytest.skip("faketime is not installed")
    config, agent, modules = machine
    env = {**_env(f"unix:path={agent}"), "LD_PRELOAD": str(FAKETIME), "FAKETIME": offset,
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    code, found = _doctor(config, env, "--modules-dir", str(modules))
    assert code == (1 if status == "fail" else 0)
    clock = found["clock"]
    assert clock["status"] == status
    seconds = 600 if offset == "+10m" else 20
    match = re.fullmatch(r"HSM (\S+)'s clock is (\d+\.\d) s behind this machine's", clock["detail"])
    assert match and match[1] == json.loads(config.read_text())["endpoints"][0], clock
    assert seconds - 2 < float(match[2]) < seconds + 2
    assert clock["fix"] == "synchronise the clocks (NTP): certificates and signed owner requests are checked " \
                           "against them"


def test_a_socket_opened_to_a_group_says_so(machine, node, tmp_path):
    config, _, modules = machine
    gid = os.getgid()
    # the group must reach the socket: a folder in /tmp (searchable by all), itself searchable by the group only
    folder = Path(tempfile.mkdtemp(prefix="grouped-"))
    try:
        os.chown(folder, -1, gid)
        folder.chmod(0o710)
        with serving_agent(node[1], folder, "--socket-group", str(gid)) as grouped:
            code, found = _doctor(config, _env(f"unix:path={grouped}"), "--modules-dir", str(modules), "--socket",
                                  str(grouped))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert code == 0
    me = pwd.getpwuid(os.getuid()).pw_name
    assert found["socket"]["detail"] == f"{grouped} accepts this user ({me}); mode 0660, owner {me}: group " \
                                        f"{grp.getgrgid(gid).gr_name} may connect"
