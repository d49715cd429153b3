"""Run in a subprocess: python-pkcs11 searches alice's private keys and certificates by class alone and by each
type; prints JSON: the CKK values found by class, the number of keys found per named key type, the labels of the
certificates found by class and of the X.509 attribute certificates found by naming their type."""

import json
import os
import sys

import pkcs11
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass

token = pkcs11.lib(sys.argv[1]).get_token()
with token.open(user_pin=os.environ["PIN"]) as session:
    private = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    by_class = sorted({int(o[Attribute.KEY_TYPE]) for o in session.get_objects(private)})
    named = {int(t): len(list(session.get_objects({**private, Attribute.KEY_TYPE: t})))
             for t in (KeyType.RSA, KeyType.EC, KeyType.EC_EDWARDS)}
    certificates = {Attribute.CLASS: ObjectClass.CERTIFICATE}
    plain = sorted(o[Attribute.LABEL] for o in session.get_objects(certificates))
    attribute = sorted(o[Attribute.LABEL] for o in session.get_objects(
        {**certificates, Attribute.CERTIFICATE_TYPE: CertificateType.X_509_ATTR_CERT}))
print(json.dumps({"by_class": by_class, "named": named, "certificates": plain, "attribute_certificates": attribute}))
