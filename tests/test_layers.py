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
