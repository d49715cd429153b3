"""One synchronous client shared by 8 threads: 64 requests in flight together, each answer checked
independently with the cryptography package."""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.vocab import CKA, CKK, CKM, CKO

THREADS, PER_THREAD = 8, 8
P256 = bytes.fromhex("06082a8648ce3d030107")


def test_64_concurrent_requests_from_8_threads(alice):
    pub, priv = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                        {CKA.SIGN: True}, label="concurrency")
    point = pub[CKA.EC_POINT]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
    aes_value = bytes(range(32))
    aes = alice.create_object(cls=CKO.SECRET_KEY, key_type=CKK.AES, value=aes_value, encrypt=True, decrypt=True,
                              token=False)
    barrier = threading.Barrier(THREADS)
    results: dict[tuple[int, int], tuple[str, bytes, bytes]] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait(10)
            for i in range(PER_THREAD):
                message = f"thread {t} request {i}".encode()
                if i % 2:
                    results[(t, i)] = ("sign", message, priv.sign(message, CKM.ECDSA_SHA256))
                else:
                    results[(t, i)] = ("encrypt", message, aes.encrypt(message))
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == THREADS * PER_THREAD
    for kind, message, out in results.values():
        if kind == "sign":
            signature = encode_dss_signature(int.from_bytes(out[:32], "big"), int.from_bytes(out[32:], "big"))
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            assert AESGCM(aes_value).decrypt(out[:12], out[12:], None) == message
