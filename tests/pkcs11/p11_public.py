"""Run in a subprocess: python-pkcs11 with nobody logged in (a public session, PKCS#11 3.0 §5.6). It makes public
session keys (CKA_TOKEN and CKA_PRIVATE false) and uses them, finds and uses a public token key a crypto user made
(argv[2]: its label), and tries what needs a login; prints JSON."""

import json
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass


def refusal(step):
    try:
        step()
    except pkcs11.exceptions.PKCS11Error as exc:
        return type(exc).__name__
    return None


token = pkcs11.lib(sys.argv[1]).get_token()
with token.open(rw=True) as session:
    aes = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.PRIVATE: False})
    public, private = session.generate_keypair(KeyType.RSA, 2048, store=False,
                                               public_template={Attribute.PRIVATE: False},
                                               private_template={Attribute.PRIVATE: False})
    signature = private.sign(b"signed without a login", mechanism=Mechanism.SHA256_RSA_PKCS)
    verifier = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label=sys.argv[2])
    out = {
        "aes": len(aes.encrypt(bytes(32), mechanism=Mechanism.AES_ECB)),
        "rsa": public.verify(b"signed without a login", signature, mechanism=Mechanism.SHA256_RSA_PKCS),
        "token public key": verifier.verify(bytes(32), bytes.fromhex(sys.argv[3]), mechanism=Mechanism.ECDSA),
        "found": sorted(ObjectClass(o[Attribute.CLASS]).name for o in session.get_objects()),
        "private session key": refusal(lambda: session.generate_key(KeyType.AES, 256, store=False)),
        "public token key": refusal(lambda: session.generate_key(KeyType.AES, 256, store=True,
                                                                 template={Attribute.PRIVATE: False})),
    }
print(json.dumps(out))
