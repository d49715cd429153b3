"""The documentation runs as written: every shell and Python block of README.md and docs/*.md, in order, against a
fresh ``strongroom up`` (what ``make run SOCKET_GROUP=nogroup`` starts, with the suite's smaller argon2 memory),
from a folder standing for the checkout with the virtual environment at ``.venv``. A block fails the test when it
exits non-zero (its text and output are in the message); a document fails it when its blocks did not print the
proofs ``PRINTS`` names.

- Blocks are fenced ``sh``/``bash`` (run by bash with ``set -eo pipefail``) or ``python`` (run by the
  environment's python); every fence names its language, so no shell block is left out unnoticed.
- Shell variables (exported or not), functions and the working folder carry from one block to the next within a
  document, as in one terminal; each document starts from a fresh shell in the checkout, with the virtual
  environment's bin on PATH.
- ``<!-- not run: REASON -->`` just before a fence leaves that block out; REASON says what the suite cannot run.
- Everything the blocks leave running (background jobs, daemons such as nginx) is stopped after the run: the test
  process adopts orphans (``PR_SET_CHILD_SUBREAPER``) and ends every process that is new below it.
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import strongroom

from .cluster.nodes import TEST_HASH_MEMORY_KIB

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"sh": "shell", "bash": "shell", "python": "python"}
SHOWN = {"text", "json", "nginx", "ini", "console-output"}  # fences that are never run: output, configuration
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
BLOCK_TIMEOUT_S = 300
SOCKET_GROUP = "nogroup"
PORTS = (8080, 8443, 3000, 3001, 3010, 3011, 3020, 3021)  # the examples' fixed listening ports
# What the examples must print, beyond exiting 0: the proofs they end with.
PRINTS = {
    "README.md": ["Signature is valid", "sealed and opened inside the cluster",
                  "refused: CKR_KEY_FUNCTION_NOT_PERMITTED", "'has_quorum': True"],
    "cli.md": ["Verified OK", "Signature verified successfully"],
    "control-plane.md": ["['admin', 'cp_app']"],
    "pkcs11.md": ["key inside Strongroom", "nobody   nginx: worker process",
                  "nginx serves TLS 1.3 with the key inside Strongroom", "Verified OK", "jar verified."],
}


@dataclass
class Block:
    document: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.document.name}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of ``document`` in order. Raises AssertionError for a fence without a language, an
    unknown language, an unclosed fence or an opt-out without a reason."""
    found: list[Block] = []
    lines = document.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        lang = opening["lang"]
        assert lang in RUN or lang in SHOWN, f"{document.name}:{index + 1}: a fence must name its language " \
            f"({', '.join(sorted({*RUN, *SHOWN}))}), not {lang!r}"
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.search(before)
        if marker is not None:
            assert marker["reason"], f"{document.name}:{index + 1}: '<!-- not run: -->' needs a reason"
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), None)
        assert end is not None, f"{document.name}:{index + 1}: the fence is never closed"
        found.append(Block(document, index + 1, lang, "\n".join(lines[index + 1:end]) + "\n",
                           marker["reason"] if marker else None))
        index = end + 1
    return found


PLACEHOLDER = re.compile(r"<[a-z][a-z0-9-]*>")


def test_every_fence_names_a_language_and_every_opt_out_a_reason():
    """The parsing the slow test relies on, on every document (fast: nothing runs); a block that is run holds no
    ``<placeholder>`` outside its comments (a block with one is opted out, with its reason)."""
    runnable = [b for d in DOCUMENTS for b in blocks(d) if b.lang in RUN and b.skip_reason is None]
    assert len(runnable) >= 20, [b.where for b in runnable]
    for block in runnable:
        for line in block.text.splitlines():
            code = re.sub(r"(^|\s)#.*", "", line)
            assert not PLACEHOLDER.search(code), f"{block.where}: a placeholder in a block that is run: {line}"


MADE_LABEL = re.compile(r"(?:--label|--public-label|--private-label|-alias)\s+\"?([\w.-]+)")
MADE_ID = re.compile(r"--keypairgen.*--id\s+(\w+)|--keygen.*--id\s+(\w+)")


def test_the_keys_the_examples_make_have_labels_and_ids_of_their_own():
    """Every key an example makes has a label (and a PKCS#11 id) no other example of any document uses: run in
    order on one cluster, a repeated label makes lookups by label ambiguous (python-pkcs11's ``get_key``,
    SunPKCS11's keystore)."""
    labels: dict[str, str] = {}
    ids: dict[str, str] = {}
    for block in (b for d in DOCUMENTS for b in blocks(d) if b.lang in RUN and b.skip_reason is None):
        text = block.text.replace("\\\n", " ")
        making = [line for line in text.splitlines() if re.search(r"keypairgen|keygen|generate|genkeypair", line)]
        made = [m for line in making for m in [*MADE_LABEL.findall(line), *re.findall(r'label="([\w.-]+)"', line)]]
        for label in made:
            assert label not in labels, f"{block.where} makes a key labelled {label!r}, as {labels[label]} does"
            labels[label] = block.where
        for key_id in (a or b for a, b in MADE_ID.findall(text)):
            assert key_id not in ids, f"{block.where} makes a key with id {key_id}, as {ids[key_id]} does"
            ids[key_id] = block.where
    assert {"readme-ec", "p11-ec", "p11-rsa", "cli-ec-priv", "p11-java-signer"} <= set(labels), labels
    assert set(ids) == {"10", "20", "21", "22"}, ids


# -- processes the blocks leave behind

PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(fields.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _end_processes(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL after 20 s, to every process in ``pids`` still running; reap those adopted."""
    for sig, grace_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            for pid in list(pids):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        pids.discard(pid)
                except ChildProcessError:  # not ours: gone once /proc forgets it
                    if not Path(f"/proc/{pid}").exists():
                        pids.discard(pid)
            if not pids:
                return
            time.sleep(0.2)


# -- the checkout and the service

def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Checkout:
    folder: Path
    env: dict[str, str]
    service: subprocess.Popen[str]
    service_log: Path


@pytest.fixture
def checkout() -> Iterator[Checkout]:
    """A folder standing for the checkout (``.venv`` the running environment, searchable by others like a
    checkout is) with ``strongroom up --data-dir ./var --socket-group nogroup`` serving in it."""
    taken = [port for port in PORTS if _listening(port)]
    assert not taken, f"the docs' examples listen on ports {taken}, which something on this host already holds"
    folder = Path(tempfile.mkdtemp(prefix="strongroom-docs-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 (a checkout's usual mode: nginx's worker reaches var/pkcs11.sock)
    (folder / ".venv").symlink_to(sys.prefix)
    source = Path(strongroom.__file__).resolve().parents[1]  # this tree's strongroom, not another install's
    env = {"PATH": f"{sys.prefix}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(folder),
           "LANG": "C.UTF-8", "PYTHONPATH": str(source), "TERM": "dumb"}
    log = folder / "up.log"
    before = _descendants(os.getpid())
    _set_subreaper(True)
    service = None
    try:
        with open(log, "w") as out:
            service = subprocess.Popen(
                [f"{sys.prefix}/bin/strongroom", "up", "--data-dir", "./var", "--socket-group", SOCKET_GROUP,
                 "--json", "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB],
                cwd=folder, env=env, stdout=subprocess.PIPE, stderr=out, text=True, start_new_session=True)
            assert service.stdout is not None
            for line in service.stdout:
                if json.loads(line).get("ready"):
                    break
            else:
                raise AssertionError(f"strongroom up did not start: {log.read_text()[-3000:]}")
        socket_path, data = folder / "var" / "pkcs11.sock", (folder / "var").stat()
        assert (stat.S_IMODE(socket_path.stat().st_mode), socket_path.stat().st_gid) == (0o660, grp.getgrnam(
            SOCKET_GROUP).gr_gid), "up --socket-group: the socket is 0660 for the group"
        assert data.st_mode & 0o001 or data.st_mode & 0o010, "up --socket-group: the group can search var/"
        yield Checkout(folder, env, service, log)
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                service.wait(120)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(10)
        _end_processes(_descendants(os.getpid()) - before)
        _set_subreaper(False)
        shutil.rmtree(folder, ignore_errors=True)


# -- running the blocks

def _shell_script(block: Block, state: Path, folder: Path) -> str:
    """bash for one block: the previous blocks' variables, functions and folder, the block, then its variables,
    functions and folder saved for the next (bash's own variables left out)."""
    return "\n".join([
        f"cd {folder}",
        f"[ -f {state} ] && . {state}",
        "set -eo pipefail",
        block.text,
        "set +e",
        f"{{ declare -p $(compgen -v | grep -vxF -f {state}.internal | grep -vE '^(BASH|_$)'); declare -f; "
        f"echo \"cd '$PWD'\"; }} > {state}.new 2>/dev/null",
        f"mv {state}.new {state}",
    ])


def _run(block: Block, checkout: Checkout, state: Path, number: int) -> tuple[int, str]:
    work = checkout.folder / ".docs-run"
    if block.lang == "python":
        script = work / f"block{number}.py"
        script.write_text(block.text)
        text = f"cd {checkout.folder}\n[ -f {state} ] && . {state}\nexec python {script}\n"
    else:
        text = _shell_script(block, state, checkout.folder)
    output = work / f"block{number}.out"
    with open(output, "w") as out:  # a file, not a pipe: background jobs keep their output open
        try:
            done = subprocess.run(["bash", "--noprofile", "--norc", "-c", text], cwd=checkout.folder,
                                  env=checkout.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return -1, output.read_text(errors="replace") + f"\n[still running after {BLOCK_TIMEOUT_S} s]\n"
    return done.returncode, output.read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the nginx recipe starts nginx's master as root (workers as nobody)")
def test_every_example_of_the_docs_runs_in_order(checkout):
    work = checkout.folder / ".docs-run"
    work.mkdir()
    internal = subprocess.run(["env", "-i", "bash", "--noprofile", "--norc", "-c", "compgen -v"], capture_output=True,
                              text=True, check=True).stdout.split()
    number = 0
    ran: list[str] = []
    for document in DOCUMENTS:
        printed = ""
        state = work / f"{document.stem}.state"
        Path(f"{state}.internal").write_text("\n".join(n for n in internal if n != "PATH") + "\n")
        for block in blocks(document):
            if block.lang not in RUN or block.skip_reason is not None:
                continue
            number += 1
            started = time.monotonic()
            code, output = _run(block, checkout, state, number)
            ran.append(f"{block.where} ({time.monotonic() - started:.1f} s)")
            printed += output
            assert code == 0, (
                f"{block.where} failed (exit {code}):\n--- block\n{block.text}--- output\n{output[-6000:]}"
                f"--- strongroom up's log (tail)\n{checkout.service_log.read_text()[-1500:]}")
        missing = [text for text in PRINTS.get(document.name, []) if text not in printed]
        assert not missing, f"{document.name}: the examples did not print {missing}:\n{printed[-6000:]}"
    assert checkout.service.poll() is None, "strongroom up stopped while the examples ran"
    print("\n".join(ran))
