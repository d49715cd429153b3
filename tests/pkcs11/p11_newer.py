"""Run in a subprocess through a newer p11-kit client: what only protocol versions 1 and 2 carry (AES-GCM, AES-CBC,
AES-CTR, ECDH, hash-and-sign ECDSA); prints JSON results. Arguments: the client module, the peer's EC point (hex)."""

import json
import os
import sys

from pkcs11.mechanisms import CTRParams, GCMParams

import pkcs11
from pkcs11 import KDF, Attribute, KeyType, Mechanism, ObjectClass

lib = pkcs11.lib(sys.argv[1])
token = lib.get_token()
out = {"mechanisms": sorted(int(m) for m in token.slot.get_mechanisms())}
key_value = bytes(range(32))
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    aes = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                 Attribute.VALUE: key_value, Attribute.ENCRYPT: True, Attribute.DECRYPT: True})
    gcm = GCMParams(bytes(range(12)), b"header", 128)
    sealed = aes.encrypt(b"through a newer client", mechanism=Mechanism.AES_GCM, mechanism_param=gcm)
    out["gcm"] = sealed.hex()
    out["gcm_back"] = aes.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=gcm).decode()
    cbc = aes.encrypt(b"cbc with padding", mechanism=Mechanism.AES_CBC_PAD, mechanism_param=bytes(16))
    out["cbc"] = cbc.hex()
    out["cbc_back"] = aes.decrypt(cbc, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=bytes(16)).decode()
    out["ctr"] = aes.encrypt(b"counter mode", mechanism=Mechanism.AES_CTR,
                             mechanism_param=CTRParams(bytes(8))).hex()
    public, private = session.generate_keypair(KeyType.EC, store=False, public_template={
        Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")}, private_template={Attribute.DERIVE: True})
    out["ec_point"] = public[Attribute.EC_POINT].hex()
    shared = private.derive_key(KeyType.AES, 256, capabilities=pkcs11.MechanismFlag.ENCRYPT,
                                mechanism_param=(KDF.NULL, None, bytes.fromhex(sys.argv[2])))
    out["ecdh_block"] = shared.encrypt(bytes(16), mechanism=Mechanism.AES_ECB).hex()
    signer_public, signer = session.generate_keypair(KeyType.EC, store=False, public_template={
        Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")}, private_template={Attribute.SIGN: True})
    out["signer_point"] = signer_public[Attribute.EC_POINT].hex()
    out["ecdsa_sha256"] = signer.sign(b"hash and sign", mechanism=Mechanism.ECDSA_SHA256).hex()
print(json.dumps(out))
