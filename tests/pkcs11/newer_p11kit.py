"""Newer p11-kit clients (Debian trixie, sid) for the PKCS#11 tests, without installing them.

The machine's own ``p11-kit-client.so`` is Debian 12's 0.24.1 (protocol version 0). Applications on newer
hosts run 0.25.x (version 1) or 0.25.6+/0.26.x (version 2, another mechanism encoding), so the agent must
be checked against those clients too. :func:`client` fetches the ``.deb`` files of a newer suite with
``apt-get download`` under a private apt configuration (own sources, lists, cache and status file; of
``/etc/apt`` only the mirror and the settings in ``_KEPT_SETTINGS`` are taken, so no system hook or pin
applies and the system's lists stay as they are), unpacks them with ``dpkg-deb -x`` and
describes how to run a program on that suite's glibc::

    newer = client("sid", default_cache())
    if newer is None:
        unreachable("Debian's package registry is not reachable")  # downloads.py: skip, or fail in CI
    subprocess.run(newer.command(["pkcs11-tool", "--module", str(newer.module), "-I"]), env=env)
    subprocess.run(newer.command([sys.executable, "script.py", str(newer.module)]), env=env)

The newer client modules need a newer glibc (GLIBC_2.38 and later), so the program runs through the
suite's dynamic loader, with the suite's libraries first on the search path and the machine's after them
(OpenSSL, libffi, libtasn1 and every other library come from the machine: glibc is backwards compatible).
Only the program itself runs that way: a process it starts with ``exec`` is an ordinary process again.

A suite is fetched once into ``cache/<suite>/`` (10-17 MB unpacked; about 3 MB of packages and 10-11 MB
of indexes downloaded, about 2 s); later calls only read its ``manifest.json``. Delete the folder to fetch
the suite again (sid moves). Concurrent callers, e.g. pytest-xdist workers, serialise on
``cache/<suite>.lock`` and the folder appears by an atomic rename, so a half-done fetch is never seen.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PACKAGES", "SUITES", "NewerClient", "NewerClientError", "client", "default_cache",
           "system_mirror"]

SUITES = ("trixie", "sid")
"""Debian suites known to ship a newer p11-kit than the machine's (0.25.5 and 0.26.x when written)."""

PACKAGES = ("libc6", "libp11-kit0", "p11-kit-modules")
"""What a suite's client needs beyond the machine's libraries: glibc, libp11-kit, p11-kit-client.so."""

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
MANIFEST = "manifest.json"
CLIENT_MODULE = "p11-kit-client.so"

# Settings of the machine's apt kept in the private configuration. Check-Valid-Until matters: a registry that
# serves a frozen copy of the archive serves sid's InRelease past its Valid-Until (a week), which apt refuses
# unless told otherwise, as this machine's /etc/apt/apt.conf.d tells it.
_KEPT_SETTINGS = ("Acquire::http::Proxy", "Acquire::https::Proxy", "Acquire::Check-Valid-Until",
                  "Acquire::Check-Date")

# apt's words (LC_ALL=C) for a mirror that cannot be reached, as opposed to one that answers wrongly
_UNREACHABLE = re.compile(r"Could not resolve|Temporary failure resolving|Could not connect|"
                          r"Unable to connect|Connection timed out|Connection failed|Network is unreachable|"
                          r"No route to host|Connection refused|Could not wait for server fd")


class NewerClientError(RuntimeError):
    """A newer suite's client could not be made ready for a reason other than an unreachable registry."""


@dataclass(frozen=True)
class NewerClient:
    """p11-kit's client module of a newer Debian suite, unpacked, with the loader that runs programs on it.

    Attributes:
        suite: the Debian suite, e.g. ``"trixie"``.
        version: p11-kit's upstream version, e.g. ``"0.25.5"``.
        packages: the Debian version of each package in :data:`PACKAGES`, e.g. ``{"libc6": "2.41-12", ...}``.
        root: the folder the packages are unpacked in.
        module: the suite's ``p11-kit-client.so``, to pass to ``pkcs11-tool --module`` or ``pkcs11.lib``.
        loader: the suite's ``ld-linux`` dynamic loader.
        library_path: the loader's ``--library-path``: the suite's library folder, then the machine's.
    """

    suite: str
    version: str
    packages: dict[str, str]
    root: Path
    module: Path
    loader: Path
    library_path: str

    @property
    def glibc_version(self) -> str:
        """The suite's glibc upstream version, e.g. ``"2.41"``."""
        return _upstream(self.packages["libc6"])

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run through the suite's loader, so that it can load :attr:`module`.

        The loader does not search ``PATH``, so a program named without a folder is looked up here.

        Raises:
            NewerClientError: the program is not found.
        """
        if not argv:
            raise ValueError("argv must name a program")
        program = argv[0]
        if os.sep not in program:
            found = shutil.which(program)
            if found is None:
                raise NewerClientError(f"{program} is not on PATH")
            program = found
        return [str(self.loader), "--library-path", self.library_path, program, *argv[1:]]


def default_cache() -> Path:
    """Where suites are kept across runs: ``$STRONGROOM_P11KIT_CACHE`` or ``~/.cache/strongroom/p11-kit``."""
    configured = os.environ.get("STRONGROOM_P11KIT_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "strongroom" / "p11-kit"


def system_mirror(etc_apt: Path = Path("/etc/apt")) -> tuple[str, Path]:
    """The Debian mirror and keyring the machine's apt uses for its main archive.

    Reads ``sources.list`` and ``sources.list.d/*.list|*.sources`` (one-line and deb822 forms) and takes the
    first enabled ``deb`` entry whose URI ends in ``/debian``; falls back to :data:`DEFAULT_MIRROR` and
    :data:`DEFAULT_KEYRING`.
    """
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list")),
             *sorted((etc_apt / "sources.list.d").glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uri, keyring in entries:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/"), Path(keyring) if keyring else DEFAULT_KEYRING
    return DEFAULT_MIRROR, DEFAULT_KEYRING


def client(suite: str, cache: Path, *, mirror: str | None = None, keyring: Path | None = None,
           timeout: float = 600) -> NewerClient | None:
    """The p11-kit client of Debian ``suite``, fetched into ``cache/<suite>/`` unless it is there already.

    Args:
        suite: a Debian suite or codename with a newer p11-kit, e.g. ``"trixie"`` or ``"sid"``.
        cache: the folder that keeps one sub-folder per suite (shared by concurrent callers).
        mirror: the Debian archive to fetch from [default: the machine's, see :func:`system_mirror`].
        keyring: the keyring that signs it [default: the machine's for that mirror].
        timeout: seconds allowed for each apt command.

    Returns:
        The unpacked client, or ``None`` when the package registry cannot be reached (so a test can skip, or
        fail in CI: ``downloads.unreachable``).

    Raises:
        NewerClientError: anything else: the suite or a package does not exist, a signature does not verify,
            apt or dpkg-deb is missing, the unpacked files lack the loader or the client module, or the
            loader cannot satisfy the client module's dependencies.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    ready = cache / suite
    found = _load(ready)
    if found is not None:
        return found
    with open(cache / f"{suite}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        found = _load(ready)
        if found is not None:
            return found
        default_mirror, default_keyring = system_mirror()
        staging = Path(tempfile.mkdtemp(prefix=f".{suite}-", dir=cache))
        try:
            if not _fetch(suite, staging, mirror or default_mirror, keyring or default_keyring, timeout):
                return None
            found = _load(staging)
            if found is None:
                raise NewerClientError(f"{suite}: the unpacked packages have no {MANIFEST}")
            _check_loadable(found, timeout)
            staging.chmod(0o755)  # mkdtemp's 0700 would hide the suite from other users of a shared cache
            if ready.exists():  # a broken earlier folder without a manifest
                shutil.rmtree(ready)
            staging.rename(ready)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _load(ready)


# ---------------------------------------------------------------------------------------------- internals
def _fetch(suite: str, folder: Path, mirror: str, keyring: Path, timeout: float) -> bool:
    """Download and unpack :data:`PACKAGES` of ``suite`` into ``folder/root``; False if unreachable."""
    for tool in ("apt-get", "apt-config", "dpkg-deb", "dpkg"):
        if shutil.which(tool) is None:
            raise NewerClientError(f"{tool} is needed to fetch the {suite} packages (a Debian machine)")
    if not keyring.is_file():
        raise NewerClientError(f"the archive keyring {keyring} is missing (package debian-archive-keyring)")
    arch = _run(["dpkg", "--print-architecture"], folder, {}, timeout).stdout.strip()
    apt = folder / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "parts", "preferences"):
        (apt / sub).mkdir(parents=True)
    (apt / "status").touch()
    (apt / "sources.list").write_text(f"deb [arch={arch} signed-by={keyring}] {mirror} {suite} main\n")
    # Dir::Etc::Main and ::Parts point away from /etc/apt, so the system's hooks and pins do not apply.
    settings = {
        "Dir::Etc::Main": "/dev/null", "Dir::Etc::Parts": apt / "parts",
        "Dir::Etc::SourceList": apt / "sources.list", "Dir::Etc::SourceParts": apt / "parts",
        "Dir::Etc::Preferences": "/dev/null", "Dir::Etc::PreferencesParts": apt / "preferences",
        "Dir::State": apt, "Dir::State::Lists": apt / "lists", "Dir::State::status": apt / "status",
        "Dir::Cache": apt / "cache", "Dir::Log": apt, "APT::Architecture": arch,
        "Acquire::Languages": "none", "Acquire::Retries": "0", "Acquire::http::Timeout": "30",
        "Acquire::https::Timeout": "30", "APT::Sandbox::User": "root",  # no _apt: the folder may be private
    }
    for key in _KEPT_SETTINGS:  # the system's word on how to reach and trust its mirror still applies
        value = _run(["apt-config", "dump", "--format", "%v", key], folder, {}, timeout).stdout.strip()
        if value:
            settings[key] = value
    conf = apt / "apt.conf"
    conf.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items())
                    + 'APT::Architectures { "' + arch + '"; };\n')
    env = {"APT_CONFIG": str(conf)}
    update = _run(["apt-get", "update", "--error-on=any"], folder, env, timeout)
    if update.returncode != 0:
        if _UNREACHABLE.search(update.stdout + update.stderr):
            return False
        raise NewerClientError(f"apt-get update for {suite} from {mirror} failed:\n"
                               f"{update.stdout}{update.stderr}")
    debs = folder / "debs"
    debs.mkdir()
    download = _run(["apt-get", "download", *PACKAGES], debs, env, timeout)
    if download.returncode != 0:
        if _UNREACHABLE.search(download.stdout + download.stderr):
            return False
        raise NewerClientError(f"apt-get download {' '.join(PACKAGES)} from {suite} failed:\n"
                               f"{download.stdout}{download.stderr}")
    root = folder / "root"
    versions: dict[str, str] = {}
    for deb in sorted(debs.glob("*.deb")):
        name, version = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], folder, {}, timeout,
                             check=True).stdout.splitlines()
        versions[name.split(":", 1)[1].strip()] = version.split(":", 1)[1].strip()
        _run(["dpkg-deb", "-x", str(deb), str(root)], folder, {}, timeout, check=True)
    missing = set(PACKAGES) - versions.keys()
    if missing:
        raise NewerClientError(f"apt-get download brought no {', '.join(sorted(missing))} from {suite}")
    fetched = [line for line in (update.stdout + download.stdout).splitlines() if line.startswith("Fetched ")]
    manifest = {"suite": suite, "mirror": mirror, "packages": versions, "apt": fetched,
                "deb_bytes": sum(deb.stat().st_size for deb in debs.glob("*.deb"))}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(apt)  # ~60 MB of indexes: the unpacked root is all that is kept
    shutil.rmtree(debs)
    return True


def _load(folder: Path) -> NewerClient | None:
    """The client described by ``folder/manifest.json``, or None when the folder is not complete."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    root = folder / "root"
    libcs = sorted(root.glob("usr/lib/*/libc.so.6")) + sorted(root.glob("lib/*/libc.so.6"))
    loaders = sorted(root.glob("usr/lib64/ld-linux*.so.*")) + sorted(root.glob("lib64/ld-linux*.so.*"))
    modules = sorted(root.glob(f"usr/lib/*/pkcs11/{CLIENT_MODULE}"))
    if not (libcs and loaders and modules):
        raise NewerClientError(f"{folder} lacks libc.so.6, the ld-linux loader or {CLIENT_MODULE}; delete it")
    triplet = libcs[0].parent.name
    library_path = ":".join((str(libcs[0].parent), f"/usr/lib/{triplet}", f"/lib/{triplet}"))
    return NewerClient(suite=manifest["suite"], version=_upstream(manifest["packages"]["libp11-kit0"]),
                       packages=manifest["packages"], root=root, module=modules[0], loader=loaders[0],
                       library_path=library_path)


def _check_loadable(newer: NewerClient, timeout: float) -> None:
    """The loader resolves every library and symbol version the client module needs, on this machine."""
    listing = _run([str(newer.loader), "--library-path", newer.library_path, "--list", str(newer.module)],
                   newer.root, {}, timeout)
    if listing.returncode != 0 or "not found" in listing.stdout + listing.stderr:
        raise NewerClientError(f"{newer.suite}'s {CLIENT_MODULE} cannot be loaded here:\n"
                               f"{listing.stdout}{listing.stderr}")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float,
         check: bool = False) -> subprocess.CompletedProcess[str]:
    full_env = {key: value for key, value in os.environ.items() if key != "APT_CONFIG"}
    full_env.update(env, LC_ALL="C")
    try:
        done = subprocess.run(argv, check=False, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NewerClientError(f"{' '.join(argv)} took more than {timeout} s") from exc
    if check and done.returncode != 0:
        raise NewerClientError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


def _upstream(debian_version: str) -> str:
    """``1:0.25.5-3`` -> ``0.25.5``: without the epoch and the Debian revision."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


def _one_line_entries(text: str) -> list[tuple[str, str | None]]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options = re.search(r"\[([^\]]*)\]", line)
        rest = line[options.end():].split() if options else line.split()[1:]
        keyring = re.search(r"signed-by=(\S+)", options.group(1)) if options else None
        if rest:
            entries.append((rest[0], keyring.group(1) if keyring else None))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, str | None]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        keyring = fields.get("signed-by")
        for uri in fields.get("uris", "").split():
            usable = keyring is not None and keyring.startswith("/")  # not an inline key block
            entries.append((uri, keyring if usable else None))
    return entries
