"""Run in a subprocess: python-pkcs11 makes an AES key and an RSA-2048 pair with its own default capabilities
(wrap and unwrap beside encrypt and decrypt), then tries the first step of the wrap-then-decrypt attack with each
on a sensitive key, then reads that key's value; prints JSON: the exceptions' classes."""

import json
import os
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism


def refusal(step):
    try:
        step()
    except pkcs11.exceptions.PKCS11Error as exc:
        return type(exc).__name__
    return None


token = pkcs11.lib(sys.argv[1]).get_token()
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    aes = session.generate_key(KeyType.AES, 256, label="app-default-aes")
    public, private = session.generate_keypair(KeyType.RSA, 2048, label="app-default-rsa")
    secret = session.generate_key(KeyType.AES, 256, label="sensitive", template={Attribute.EXTRACTABLE: True})
    out = {
        "aes": refusal(lambda: aes.wrap_key(secret, mechanism=Mechanism.AES_ECB)),  # 0.24 clients carry no AES wrap
        "rsa": refusal(lambda: public.wrap_key(secret, mechanism=Mechanism.RSA_PKCS_OAEP,
                                               mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, None))),
        "data": private.decrypt(public.encrypt(b"data", mechanism=Mechanism.RSA_PKCS_OAEP,
                                               mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, None)),
                                mechanism=Mechanism.RSA_PKCS_OAEP,
                                mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, None)).decode(),
        "value": refusal(lambda: secret[Attribute.VALUE]),
        "sensitive": secret[Attribute.SENSITIVE],
    }
print(json.dumps(out))
