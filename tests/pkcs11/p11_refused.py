"""Run in a subprocess: python-pkcs11 asks for an AES key that both decrypts and wraps (its own default
capabilities), then reads the value of a sensitive key; prints JSON: the exceptions' classes and the first's
text."""

import json
import os
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag

token = pkcs11.lib(sys.argv[1]).get_token()
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    try:
        session.generate_key(KeyType.AES, 256, label="refused", store=True, capabilities=(
            MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT | MechanismFlag.WRAP | MechanismFlag.UNWRAP))
        out = {"error": None, "text": ""}
    except pkcs11.exceptions.PKCS11Error as exc:
        out = {"error": type(exc).__name__, "text": str(exc)}
    key = session.generate_key(KeyType.AES, 256, label="sensitive",
                               capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT)
    try:
        key[Attribute.VALUE]
        out["value"] = "readable"
    except pkcs11.exceptions.PKCS11Error as exc:
        out["value"] = type(exc).__name__
print(json.dumps(out))
