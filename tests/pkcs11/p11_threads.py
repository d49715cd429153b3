"""Run in a subprocess: python-pkcs11 through p11-kit-client.so; keys found by label and id, RSA-OAEP decryption of
the test's ciphertext, an HMAC, then 8 threads x 500 ECDSA signatures, each thread with its own session. Arguments:
the client module, the OAEP ciphertext (hex). Prints JSON."""

import json
import os
import sys
import threading

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

THREADS, SIGNATURES = 8, 500
lib = pkcs11.lib(sys.argv[1])
token = lib.get_token()
pin = os.environ["PIN"]
out = {}
with token.open(user_pin=pin) as session:
    rsa = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label="threads-rsa", id=b"\x01\x02")
    plain = rsa.decrypt(bytes.fromhex(sys.argv[2]), mechanism=Mechanism.RSA_PKCS_OAEP,
                        mechanism_param=(Mechanism.SHA256, MGF.SHA256, None))
    out["oaep"] = plain.decode()
    mac_key = session.get_key(ObjectClass.SECRET_KEY, label="threads-hmac")
    out["hmac"] = mac_key.sign(b"authenticated", mechanism=Mechanism.SHA256_HMAC).hex()
    out["by_id"] = [k[Attribute.LABEL] for k in session.get_objects({Attribute.ID: b"\x01\x02"})]
    try:
        rsa[Attribute.PRIVATE_EXPONENT]
        out["exponent"] = "readable"
    except pkcs11.exceptions.AttributeSensitive:
        out["exponent"] = "refused"

digests = [i.to_bytes(32, "big") for i in range(SIGNATURES)]
signatures: dict[int, list[str]] = {}
failures: list[str] = []


def signer(n: int) -> None:
    try:
        with token.open() as session:
            key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label="threads-ec")
            signatures[n] = [key.sign(d, mechanism=Mechanism.ECDSA).hex() for d in digests]
    except Exception as exc:  # reported, the test fails on it
        failures.append(repr(exc))


# The first session logs the application in; the others share its login (PKCS#11 3.0 §5.6).
with token.open(user_pin=pin) as login_session:
    threads = [threading.Thread(target=signer, args=(n,)) for n in range(1, THREADS + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
out["signatures"] = signatures
out["failures"] = failures
print(json.dumps(out))
