"""Who may use the agent's PKCS#11 socket: its owner alone (0600), or with ``--socket-group`` that group's members
too (0660), and only when every folder on the way lets the group in; ``strongroom up --socket-group`` opens its data
directory to the group (search only) and refuses a data directory the group cannot reach."""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from strongroom.cli.up import open_to_group

from .conftest import P11_KIT_CLIENT, serving_agent, with_agent_certificate

NOBODY, NOGROUP = 65534, 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing a folder's group and becoming nobody need root")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder whose parents everyone may search (tmp_path's parents are 0700), itself 0700."""
    folder = Path(tempfile.mkdtemp(prefix="strongroom-socket-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _as_nobody(socket_path: Path) -> subprocess.CompletedProcess[str]:
    """pkcs11-tool listing the token as user nobody, group nogroup, through the agent at ``socket_path``."""
    env = {"PATH": os.environ["PATH"], "P11_KIT_SERVER_ADDRESS": f"unix:path={socket_path}"}
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups", "pkcs11-tool",
                           "--module", str(P11_KIT_CLIENT), "-L"], capture_output=True, text=True, timeout=60,
                          env=env)


def _agent_config(pki, node, folder: Path) -> dict:
    _, config = node
    return with_agent_certificate(config, pki, folder)


def test_without_a_group_the_socket_is_the_agents_alone(node, pki, open_folder):
    os.chmod(open_folder, 0o755)  # noqa: S103
    with serving_agent(_agent_config(pki, node, open_folder), open_folder) as socket_path:
        status = socket_path.stat()
        assert stat.S_ISSOCK(status.st_mode)
        assert stat.S_IMODE(status.st_mode) == 0o600
        assert status.st_uid == os.geteuid()
        refused = _as_nobody(socket_path)
        assert "cluster-test0000001" not in refused.stdout, refused.stdout


def test_a_socket_group_may_use_the_socket_through_a_folder_it_may_only_search(node, pki, open_folder):
    os.chown(open_folder, -1, NOGROUP)
    os.chmod(open_folder, 0o710)  # noqa: S103
    config = _agent_config(pki, node, open_folder)
    with serving_agent(config, open_folder, "--socket-group", "nogroup") as socket_path:
        status = socket_path.stat()
        assert stat.S_ISSOCK(status.st_mode)
        assert stat.S_IMODE(status.st_mode) == 0o660
        assert (status.st_uid, status.st_gid) == (os.geteuid(), NOGROUP)
        listed = _as_nobody(socket_path)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "cluster-test0000001" in listed.stdout, listed.stdout
    folder = open_folder.stat()
    assert (stat.S_IMODE(folder.st_mode), folder.st_gid) == (0o710, NOGROUP)  # the agent changes no folder


def test_an_agent_whose_group_cannot_reach_the_socket_says_which_folder_and_exits(node, pki, open_folder):
    inner = open_folder / "private"
    inner.mkdir(mode=0o700)
    config = open_folder / "cluster.json"
    config.write_text(json.dumps(_agent_config(pki, node, open_folder)))
    done = subprocess.run([sys.executable, "-m", "strongroom", "client", "--config", str(config), "--socket",
                           str(inner / "p11.sock"), "--socket-group", "nogroup"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (f"Error: cannot serve on {inner / 'p11.sock'}: the socket group nogroup cannot reach it: "
                           f"{inner} (mode 0700) is not searchable by that group; allow it (chgrp nogroup and chmod "
                           "g+x, or chmod o+x) or choose a socket folder the group can reach\n")
    assert done.stdout == ""
    assert not (inner / "p11.sock").exists()
    unknown = subprocess.run([sys.executable, "-m", "strongroom", "client", "--config", str(config), "--socket",
                              str(open_folder / "p11.sock"), "--socket-group", "no-such-group-here"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1
    assert unknown.stderr == ("Error: no group 'no-such-group-here' on this host: give a group name or id from "
                              "/etc/group\n")


def test_up_opens_its_data_directory_to_the_group_for_search_only(open_folder):
    data = open_folder / "var"
    data.mkdir(mode=0o700)
    (data / "credentials.json").write_text("{}")
    os.chmod(data / "credentials.json", 0o600)
    os.chmod(open_folder, 0o711)  # noqa: S103
    open_to_group(data, "nogroup")
    status = data.stat()
    assert (stat.S_IMODE(status.st_mode), status.st_gid) == (0o710, NOGROUP)
    assert stat.S_IMODE((data / "credentials.json").stat().st_mode) == 0o600
    listing = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups", "ls", str(data)],
                             capture_output=True, text=True, timeout=30)
    assert listing.returncode != 0 and "Permission denied" in listing.stderr  # search, not list
    open_to_group(data, "nogroup")  # again: nothing changes
    assert stat.S_IMODE(data.stat().st_mode) == 0o710


def test_up_refuses_a_data_directory_the_group_cannot_reach_and_says_which_folder(open_folder):
    data = open_folder / "var"
    data.mkdir(mode=0o755)
    os.chmod(open_folder, 0o700)
    with pytest.raises(click.ClickException) as refused:
        open_to_group(data, "nogroup")
    assert refused.value.message == (
        f"--socket-group nogroup: the group cannot reach {data / 'pkcs11.sock'}: {open_folder} (mode 0700) is not "
        "searchable by it; allow it (chgrp nogroup and chmod g+x, or chmod o+x) or choose a --data-dir the group can "
        "reach")
    assert stat.S_IMODE(open_folder.stat().st_mode) == 0o700  # up changes no folder it did not make
    with pytest.raises(click.ClickException) as unknown:
        open_to_group(data, "no-such-group-here")
    assert unknown.value.message == ("--socket-group: no group 'no-such-group-here' on this host: give a group name "
                                     "or id from /etc/group")


def _acl_group_search(folder: Path, gid: int) -> None:
    """A POSIX ACL on ``folder``: its owner rwx, group ``gid`` search only, nobody else (the xattr's binary form,
    acl(5): version 2, then tag, permissions, id per entry), set without setfacl."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x04, 0, undefined), (0x08, 1, gid), (0x10, 1, undefined), (0x20, 0, undefined)]
    os.setxattr(folder, "system.posix_acl_access",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries))


def test_a_folder_that_lets_the_group_in_by_an_acl_is_not_refused(node, pki, open_folder):
    inner = open_folder / "acl"
    inner.mkdir(mode=0o700)
    _acl_group_search(inner, NOGROUP)
    os.chmod(open_folder, 0o711)  # noqa: S103
    config = _agent_config(pki, node, open_folder)
    with serving_agent(config, inner, "--socket-group", "nogroup") as socket_path:
        listed = _as_nobody(socket_path)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "cluster-test0000001" in listed.stdout, listed.stdout
