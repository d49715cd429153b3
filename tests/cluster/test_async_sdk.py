"""The asyncio SDK against a real node: many requests in flight on one connection, results checked with
``cryptography``."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import strongroom.client as sdk
from strongroom import errors
from strongroom.client import Key, Session
from strongroom.vocab import CKA, CKK, CKM, CKO, CKR

from ..fixtures.cluster import ALICE_PW

P256_OID = bytes.fromhex("06082a8648ce3d030107")
CONCURRENT = 64


def _point(ec_point: bytes) -> bytes:
    """The uncompressed point inside CKA_EC_POINT's DER OCTET STRING (65 bytes for P-256)."""
    assert ec_point[:2] == b"\x04\x41"
    return ec_point[2:]


def _der(signature: bytes) -> bytes:
    half = len(signature) // 2
    r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    return encode_dss_signature(r, s)


async def _ecdsa_scenario(config: dict) -> None:
    cluster = await sdk.connect_async(config)
    async with cluster:
        session = await cluster.login("alice", ALICE_PW)
        assert isinstance(session, Session)
        info = await session.info()
        assert info["state"] is not None
        pub, priv = await session.generate_key_pair(CKM.EC_KEY_PAIR_GEN,
                                                    {CKA.EC_PARAMS: P256_OID, CKA.VERIFY: True},
                                                    {CKA.SIGN: True}, token=False, label="async-ecdsa")
        assert isinstance(pub, Key) and isinstance(priv, Key)
        attrs = await pub.get(CKA.EC_POINT, CKA.EC_PARAMS)
        assert attrs[CKA.EC_PARAMS] == P256_OID
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _point(attrs[CKA.EC_POINT]))

        messages = [f"message {i}: ".encode() + os.urandom(16) for i in range(CONCURRENT)]
        signatures = await asyncio.gather(*(priv.sign(msg, CKM.ECDSA_SHA256) for msg in messages))
        assert len(signatures) == CONCURRENT
        for msg, signature in zip(messages, signatures, strict=True):
            assert len(signature) == 64
            public_key.verify(_der(signature), msg, ec.ECDSA(hashes.SHA256()))
        assert len(set(signatures)) == CONCURRENT

        # raw ECDSA over SHA-256 digests, all in flight at once, and verification back through the node
        digests = [hashlib.sha256(msg).digest() for msg in messages]
        raw = await asyncio.gather(*(priv.sign(d, CKM.ECDSA) for d in digests))
        for digest, signature in zip(digests, raw, strict=True):
            public_key.verify(_der(signature), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        results = await asyncio.gather(*(pub.verify(msg, sig, CKM.ECDSA_SHA256)
                                         for msg, sig in zip(messages, signatures, strict=True)))
        assert results == [None] * CONCURRENT

        # errors arrive as the exact class, also in the middle of a gather
        bad = signatures[0][:-1] + bytes([signatures[0][-1] ^ 1])
        outcomes = await asyncio.gather(pub.verify(messages[0], bad, CKM.ECDSA_SHA256),
                                        pub.verify(messages[1], signatures[1], CKM.ECDSA_SHA256),
                                        return_exceptions=True)
        assert type(outcomes[0]) is errors.SignatureInvalid and outcomes[0].ckr == CKR.SIGNATURE_INVALID
        assert outcomes[1] is None
        await session.close()


async def _symmetric_scenario(config: dict) -> None:
    cluster = await sdk.connect_async(config)
    async with cluster:
        session = await cluster.login("alice", ALICE_PW)
        aes_value, mac_value = os.urandom(32), os.urandom(32)
        aes = await session.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES,
                                           CKA.VALUE: aes_value}, encrypt=True, decrypt=True)
        mac = await session.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET,
                                           CKA.VALUE: mac_value})
        messages = [os.urandom(100 + i) for i in range(CONCURRENT)]
        sealed, macs = await asyncio.gather(
            asyncio.gather(*(aes.encrypt(msg) for msg in messages)),
            asyncio.gather(*(mac.sign(msg, CKM.SHA256_HMAC) for msg in messages)))
        for msg, box, tag in zip(messages, sealed, macs, strict=True):
            assert AESGCM(aes_value).decrypt(box[:12], box[12:], None) == msg
            ref = hmac.HMAC(mac_value, hashes.SHA256())
            ref.update(msg)
            assert tag == ref.finalize()
        assert len({box[:12] for box in sealed}) == CONCURRENT  # one fresh IV per message
        opened = await asyncio.gather(*(aes.decrypt(box) for box in sealed))
        assert opened == messages
        randoms = await asyncio.gather(*(session.random(32) for _ in range(CONCURRENT)))
        assert len(set(randoms)) == CONCURRENT and all(len(r) == 32 for r in randoms)
        with pytest.raises(TypeError):
            aes[CKA.LABEL]  # synchronous attribute access is refused in async mode
        await session.close()


def test_async_login_generate_and_64_concurrent_ecdsa_signatures(node):
    _, config = node
    asyncio.run(asyncio.wait_for(_ecdsa_scenario(config), 60))


def test_async_concurrent_symmetric_operations(node):
    _, config = node
    asyncio.run(asyncio.wait_for(_symmetric_scenario(config), 60))


def test_async_wrong_password_raises_pin_incorrect(node):
    _, config = node

    async def scenario() -> None:
        cluster = await sdk.connect_async(config)
        async with cluster:
            with pytest.raises(errors.PinIncorrect) as info:
                await cluster.login("alice", "not-the-password")
            assert info.value.ckr == CKR.PIN_INCORRECT

    asyncio.run(asyncio.wait_for(scenario(), 60))
