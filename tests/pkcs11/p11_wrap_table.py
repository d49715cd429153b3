"""Run in a subprocess: the wrap mechanism table and the legacy HMAC key types through python-pkcs11 and a p11-kit
client; prints JSON: case name to the CKR code it answered (0 for success, after checking the bytes with
``cryptography`` / Python's hmac), and the ``CKF_WRAP`` / ``CKF_UNWRAP`` flags of every mechanism the client offers
with either (each named by Strongroom's ``CKM``). argv: the client module, then ``aes`` to run the AES rows too (a
client that carries ``CKM_AES_CBC_PAD``). Also whether an Ed25519 public key's ``CKA_EC_POINT``, given raw or as
DER, reads back as the DER OCTET STRING."""

import hashlib
import hmac
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11.util.ec import encode_named_curve_parameters

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from strongroom.vocab import CKM, CKR

CKR_OK = 0
OAEP = (Mechanism.SHA256, MGF.SHA256, None)
OAEP_SCHEME = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
IV = bytes(range(16))
MESSAGE = b"legacy HMAC key types"


def code(step):
    try:
        step()
    except pkcs11.exceptions.PKCS11Error as exc:
        unmapped = re.search(r"Unmapped error code (0x[0-9a-f]+)", str(exc))
        if unmapped:
            return int(unmapped.group(1), 16)
        return int(CKR[re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()])
    return CKR_OK


def pkcs8(private_key):
    return private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


token = pkcs11.lib(sys.argv[1]).get_token()
out = {}
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    out["flags"] = {}  # every mechanism the client offers with CKF_WRAP or CKF_UNWRAP
    for mech in token.slot.get_mechanisms():
        flags = token.slot.get_mechanism_info(mech).flags
        if flags & (MechanismFlag.WRAP | MechanismFlag.UNWRAP):
            out["flags"][CKM(int(mech)).name] = [bool(flags & MechanismFlag.WRAP), bool(flags & MechanismFlag.UNWRAP)]
    ours = rsa.generate_private_key(65537, 2048)
    numbers = ours.public_key().public_numbers()
    public = session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.WRAP: True,
        Attribute.MODULUS: numbers.n.to_bytes(256, "big"), Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes(3, "big")})
    value = os.urandom(32)
    secret = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                    Attribute.VALUE: value, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    _, ec_private = params.generate_keypair(store=False, capabilities=0,
                                            private_template={Attribute.SIGN: True, Attribute.EXTRACTABLE: True})

    def wrap_secret(mech, param, opener):
        def step():
            assert opener(public.wrap_key(secret, mechanism=mech, mechanism_param=param)) == value
        return step

    out["RSA_PKCS wraps an AES key"] = code(wrap_secret(Mechanism.RSA_PKCS, None,
                                                        lambda b: ours.decrypt(b, padding.PKCS1v15())))
    out["RSA_PKCS_OAEP wraps an AES key"] = code(wrap_secret(Mechanism.RSA_PKCS_OAEP, OAEP,
                                                             lambda b: ours.decrypt(b, OAEP_SCHEME)))
    out["RSA_PKCS wraps an EC private key"] = code(
        lambda: public.wrap_key(ec_private, mechanism=Mechanism.RSA_PKCS))
    out["RSA_PKCS_OAEP wraps an EC private key"] = code(
        lambda: public.wrap_key(ec_private, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP))
    token_public, token_private = session.generate_keypair(
        KeyType.RSA, 2048, store=False, capabilities=0, private_template={Attribute.UNWRAP: True})
    theirs = rsa.RSAPublicNumbers(int.from_bytes(token_public[Attribute.PUBLIC_EXPONENT], "big"),
                                  int.from_bytes(token_public[Attribute.MODULUS], "big")).public_key()
    ec_der = pkcs8(ec.generate_private_key(ec.SECP256R1()))  # 138 bytes: one RSA-2048 OAEP block
    out["RSA_PKCS_OAEP unwraps into a private key"] = code(lambda: token_private.unwrap_key(
        ObjectClass.PRIVATE_KEY, KeyType.EC, theirs.encrypt(ec_der, OAEP_SCHEME), mechanism=Mechanism.RSA_PKCS_OAEP,
        mechanism_param=OAEP, store=False, capabilities=MechanismFlag.SIGN))
    if "aes" in sys.argv[2:]:
        loader = os.urandom(32)
        kek = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                     Attribute.VALUE: loader, Attribute.WRAP: True})

        def wrap_private():
            wrapped = kek.wrap_key(ec_private, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=IV)
            decryptor = Cipher(algorithms.AES(loader), modes.CBC(IV)).decryptor()
            padded = decryptor.update(wrapped) + decryptor.finalize()
            serialization.load_der_private_key(padded[:-padded[-1]], None)
        out["AES_CBC_PAD wraps an EC private key"] = code(wrap_private)
    # the legacy HMAC key types
    hmac_value = os.urandom(40)
    legacy = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.SHA256_HMAC,
                                    Attribute.VALUE: hmac_value, Attribute.SIGN: True, Attribute.VERIFY: True})
    out["CKK_SHA256_HMAC key type read back"] = int(legacy[Attribute.KEY_TYPE])

    def mac():
        assert legacy.sign(MESSAGE, mechanism=Mechanism.SHA256_HMAC) == hmac.new(hmac_value, MESSAGE,
                                                                                 hashlib.sha256).digest()
    out["CKK_SHA256_HMAC signs with CKM_SHA256_HMAC"] = code(mac)
    out["CKK_SHA256_HMAC signs with CKM_SHA384_HMAC"] = code(
        lambda: legacy.sign(MESSAGE, mechanism=Mechanism.SHA384_HMAC))
    # CKA_EC_POINT of an Ed25519 public key given raw (the PKCS#11 3.1 form) and as DER (3.0): read back as DER
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                          serialization.PublicFormat.Raw)
    for form, point in (("raw", raw), ("DER", b"\x04\x20" + raw)):
        edwards = session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.VERIFY: True,
            Attribute.EC_PARAMS: bytes.fromhex("06032b6570"), Attribute.EC_POINT: point})
        out[f"Ed25519 CKA_EC_POINT given {form}, read back"] = edwards[Attribute.EC_POINT].hex() == "0420" + raw.hex()
print(json.dumps(out))
