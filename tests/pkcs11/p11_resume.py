"""Run in a subprocess: a python-pkcs11 application (p11-kit-client.so) that keeps one logged-in session and signs
the hex digest of each line it reads on stdin; prints one JSON line per line read, {"signature": HEX} or
{"error": NAME}. Usage: p11_resume.py MODULE LABEL, with the PIN in $PIN."""

import json
import os
import sys

import pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass

lib = pkcs11.lib(sys.argv[1])
with lib.get_token().open(user_pin=os.environ["PIN"]) as session:
    key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=sys.argv[2])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            out = {"signature": key.sign(bytes.fromhex(line.strip()), mechanism=Mechanism.ECDSA).hex()}
        except pkcs11.exceptions.PKCS11Error as exc:
            out = {"error": type(exc).__name__}
        print(json.dumps(out), flush=True)
