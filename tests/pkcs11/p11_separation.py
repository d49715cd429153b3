"""Run in a subprocess: every key-management attack of tests/node/separation_attacks.py through python-pkcs11
and a p11-kit client; prints JSON: attack name to the CKR code its last step answered (rows needing what
PKCS#11 through p11-kit cannot do are left out: an admin login beside the user's, the SP 800-108 KDF).

Mechanisms: ``aes-wrap`` is CKM_AES_CBC_PAD with a fixed IV (the AES wrapping mechanism p11-kit 0.25 and later
clients carry), ``rsa-wrap`` CKM_RSA_PKCS_OAEP with SHA-256 and MGF1-SHA-256. argv: the client module.
Also reports the python-pkcs11 defaults case: its default AES key and RSA-2048 pair, and a sensitive key wrapped
under each (refused)."""

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pkcs11.util.ec import encode_named_curve_parameters

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from strongroom.vocab import CKA, CKR
from tests.node.separation_attacks import ATTACKS, TARGET

IV = bytes(16)
MECHANISMS = {"aes-wrap": (Mechanism.AES_CBC_PAD, IV), "rsa-wrap": (Mechanism.RSA_PKCS_OAEP,
                                                                     (Mechanism.SHA256, MGF.SHA256, None))}


def _template(attrs):
    return {Attribute(int(k)): v for k, v in attrs.items()}


class Pkcs11Driver:
    def __init__(self, session):
        self.session = session

    def secret(self, attrs):
        return self.session.generate_key(KeyType.AES, 256, store=bool(attrs.get(CKA.TOKEN)), capabilities=0,
                                         template=_template(attrs))

    def pair(self, pub, priv):
        return self.session.generate_keypair(KeyType.RSA, 2048, store=False, capabilities=0,
                                             public_template=_template(pub), private_template=_template(priv))

    def ec_private(self, attrs):
        params = self.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        return params.generate_keypair(store=False, capabilities=0,
                                       private_template=_template({CKA.SIGN: True, **attrs}))[1]

    def wrap(self, wrapper, key, mech):
        mechanism, param = MECHANISMS[mech]
        return wrapper.wrap_key(key, mechanism=mechanism, mechanism_param=param)

    def unwrap(self, unwrapper, blob, template, mech):
        mechanism, param = MECHANISMS[mech]
        rest = {k: v for k, v in template.items() if k not in (CKA.CLASS, CKA.KEY_TYPE)}
        return unwrapper.unwrap_key(ObjectClass(int(template[CKA.CLASS])), KeyType(int(template[CKA.KEY_TYPE])),
                                    blob, mechanism=mechanism, mechanism_param=param, store=False, capabilities=0,
                                    template=_template(rest))

    def encrypt(self, key, data, mech):
        mechanism, param = MECHANISMS[mech]
        return key.encrypt(data, mechanism=mechanism, mechanism_param=param)

    def set(self, key, attrs):
        for cka, value in attrs.items():
            key[Attribute(int(cka))] = value

    def copy(self, key, attrs):
        return key.copy(_template(attrs))

    def public_import(self, public, attrs):
        return self.session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
            Attribute.MODULUS: public[Attribute.MODULUS], Attribute.PUBLIC_EXPONENT: public[Attribute.PUBLIC_EXPONENT],
            **_template(attrs)})

    @staticmethod
    def code(step):
        try:
            step()
        except pkcs11.exceptions.PKCS11Error as exc:
            unmapped = re.search(r"Unmapped error code (0x[0-9a-f]+)", str(exc))
            if unmapped:
                return int(unmapped.group(1), 16)
            return int(CKR[re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()])
        return int(CKR.OK)


token = pkcs11.lib(sys.argv[1]).get_token()
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    driver = Pkcs11Driver(session)
    out = {attack.name: driver.code(attack.run(driver)) for attack in ATTACKS if not attack.needs}
    aes = session.generate_key(KeyType.AES, 256)  # python-pkcs11's defaults: wrap beside decrypt
    public, _ = session.generate_keypair(KeyType.RSA, 2048)
    target = driver.secret(TARGET)
    out["python-pkcs11 default AES key wraps a sensitive key"] = driver.code(
        lambda: driver.wrap(aes, target, "aes-wrap"))
    out["python-pkcs11 default RSA key wraps a sensitive key"] = driver.code(
        lambda: driver.wrap(public, target, "rsa-wrap"))
print(json.dumps(out))
