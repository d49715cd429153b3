"""No key value reaches the database or WAL files in clear."""

from __future__ import annotations

from strongroom.node.testing import key_material

from .keys import ED25519, P256, P384, P521, SECP256K1, aes, ec, hmac_key, rsa


def test_no_key_value_on_disk(hsm, alice):
    handles = []
    for i in range(100):
        handles.append(aes(alice, size=(16, 24, 32)[i % 3]))
        handles.append(hmac_key(alice, size=64))
        handles.extend(ec(alice, params=(P256, P384, SECP256K1, P521)[i % 4]))
        handles.extend(ec(alice, params=ED25519))
        handles.extend(rsa(alice))
    # secret values, and for private keys every 16-byte window of the PKCS#8 encoding (it holds the scalar,
    # the primes and the private exponent)
    needles: set[bytes] = set()
    for h in handles:
        material = key_material(hsm, h)
        obj = hsm.repository.get_object(h)
        if obj.cls.name == "SECRET_KEY":
            needles.add(material)
        elif obj.cls.name == "PRIVATE_KEY":
            needles.update(material[i:i + 16] for i in range(0, len(material) - 16, 8))
    assert len(needles) > 1000
    blobs = b""
    for path in hsm.data_dir.iterdir():
        if path.name.startswith("hsm.sqlite"):
            blobs += path.read_bytes()
    assert len(blobs) > 100_000
    found = [n for n in needles if n in blobs]
    assert found == []
