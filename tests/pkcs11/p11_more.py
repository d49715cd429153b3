"""Run in a subprocess: more PKCS#11 calls through p11-kit-client.so; prints JSON results."""

import json
import os
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

lib = pkcs11.lib(sys.argv[1])
token = lib.get_token()
out = {}
value = bytes(range(32))
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    out["sha256"] = session.digest(b"abc", mechanism=Mechanism.SHA256).hex()
    out["sha256_parts"] = session.digest([b"a", b"b", b"c"], mechanism=Mechanism.SHA256).hex()
    imported = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                      Attribute.VALUE: value, Attribute.TOKEN: True, Attribute.ENCRYPT: True,
                                      Attribute.LABEL: "p11-imported"})
    out["ecb"] = imported.encrypt(b"\x00" * 32, mechanism=Mechanism.AES_ECB).hex()
    # encrypt/decrypt only: the node keeps wrapping keys apart from decrypting ones (key separation)
    aes = session.generate_key(KeyType.AES, 256, label="p11-aes", store=True,
                               capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT)
    sealed = aes.encrypt(b"y" * 32, mechanism=Mechanism.AES_ECB)
    out["round_trip"] = aes.decrypt(sealed, mechanism=Mechanism.AES_ECB) == b"y" * 32
    aes[Attribute.LABEL] = "p11-aes-renamed"
    out["label"] = aes[Attribute.LABEL]
    try:
        imported[Attribute.VALUE]
        out["value"] = "readable"
    except pkcs11.exceptions.AttributeSensitive:
        out["value"] = "refused"
    try:
        session.seed_random(b"x" * 16)
        out["seed"] = "accepted"
    except pkcs11.exceptions.PKCS11Error as exc:
        out["seed"] = type(exc).__name__
print(json.dumps(out))
