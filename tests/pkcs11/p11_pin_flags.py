"""Run in a subprocess: python-pkcs11 reads the token's flags before and after a login with the wrong PIN
``$PIN`` through p11-kit-client.so, and with the good one ``$GOOD_PIN``; prints JSON results."""

import json
import os
import sys

import pkcs11
from pkcs11 import TokenFlag

lib = pkcs11.lib(sys.argv[1])
slot = lib.get_slots()[0]
out = {"before": int(slot.get_token().flags)}
try:
    with slot.get_token().open(user_pin=os.environ["PIN"]):
        out["login"] = "accepted"
except pkcs11.exceptions.PinIncorrect:
    out["login"] = "PinIncorrect"
flags = slot.get_token().flags
out["after"] = int(flags)
out["count_low"] = bool(flags & TokenFlag.USER_PIN_COUNT_LOW)
with slot.get_token().open(user_pin=os.environ["GOOD_PIN"]):
    out["good"] = int(slot.get_token().flags)
print(json.dumps(out))
