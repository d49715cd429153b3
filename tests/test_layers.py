"""What each face of the package loads: the SDK, the wire format and the PKCS#11 agent carry no implementation
of the node (its crypto, object model, store or replication), so an application process stays small and cannot
reach the node's code."""

from __future__ import annotations

import subprocess
import sys

import pytest

_NODE_LAYERS = ("strongroom.crypto", "strongroom.objects", "strongroom.node", "strongroom.store",
                "strongroom.replication")


@pytest.mark.parametrize("face", ["strongroom.client", "strongroom.protocol", "strongroom.pkcs11.agent"])
def test_a_face_loads_no_node_layer(face):
    probe = (f"import sys, {face}; "
             f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({_NODE_LAYERS!r}))))")
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert loaded.split() == []


def _bench_imports() -> dict[str, set[str]]:
    """Each bench script's imports (top-level names, function-level imports included)."""
    import ast
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench"
    found: dict[str, set[str]] = {}
    for path in bench.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[path.stem] = names
    return found


def test_bench_scripts_import_one_way_and_shadow_no_package():
    imports = _bench_imports()
    local = {name: names & set(imports) for name, names in imports.items()}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in visiting, f"import cycle in bench/: {' -> '.join((*path, name))}"
        if name in done:
            return
        visiting.add(name)
        for other in sorted(local[name]):
            visit(other, (*path, name))
        visiting.discard(name)
        done.add(name)

    for name in sorted(local):
        visit(name, ())
    # bench/ is on sys.path when a script runs: a module there named like an installed or standard module
    # shadows it for every bench script (a bench/pkcs11.py hid python-pkcs11)
    import importlib.util

    shadowed = {name for name in imports
                if name in sys.stdlib_module_names or importlib.util.find_spec(name) is not None}
    assert shadowed == set()


def test_no_two_modules_or_packages_of_src_share_a_name():
    """A reader finds the room for a change from the tree alone: each module and package of src/strongroom is
    named once (``__init__`` and ``__main__`` aside)."""
    from collections import Counter
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "strongroom"
    names = [p.stem for p in root.rglob("*.py") if p.stem not in ("__init__", "__main__")]
    names += [p.name for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    assert {name for name, count in Counter(names).items() if count > 1} == set()


def test_no_module_of_src_is_over_500_lines():
    """The standard's tables (``vocab.py``) and the exception tree (``errors.py``, one class per ``CKR_*``)
    aside."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "strongroom"
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500 and p.name not in ("vocab.py", "errors.py")}
    assert long == {}
