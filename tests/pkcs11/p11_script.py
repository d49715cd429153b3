"""Run in a subprocess: python-pkcs11 through p11-kit-client.so against the agent; prints JSON results."""

import json
import os
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

lib = pkcs11.lib(sys.argv[1])
token = lib.get_token()
out = {"label": token.label, "flags": int(token.flags),
       "mechanisms": sorted(int(m) for m in token.slot.get_mechanisms())}
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    out["random"] = len(session.generate_random(256))
    key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=sys.argv[2])
    digest = bytes(range(32))
    out["signature"] = key.sign(digest, mechanism=Mechanism.ECDSA).hex()
    out["digest"] = digest.hex()
    try:
        key[Attribute.VALUE]
        out["sensitive"] = "readable"
    except pkcs11.exceptions.AttributeSensitive:
        out["sensitive"] = "refused"
print(json.dumps(out))
