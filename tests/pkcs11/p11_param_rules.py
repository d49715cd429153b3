"""Run in a subprocess through a p11-kit client module: mechanism parameters whose fields disagree, sent by PyKCS11
with the one field changed after the library filled the struct; prints the return code of each init as JSON.
Arguments: the client module, then ``gcm`` (needs a client that carries CK_GCM_PARAMS: 0.25 and later) and/or
``oaep`` (every client carries CK_RSA_PKCS_OAEP_PARAMS)."""

import json
import os
import sys

import PyKCS11

lib = PyKCS11.PyKCS11Lib()
lib.load(sys.argv[1])
session = lib.openSession(lib.getSlotList(tokenPresent=True)[0], PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
session.login(os.environ["PIN"])
out = {}


def encrypt_init(key, mechanism) -> int:
    """The return code of C_EncryptInit (C_Encrypt finishes an accepted operation)."""
    try:
        session.encrypt(key, b"sixteen bytes!!!", mechanism)
    except PyKCS11.PyKCS11Error as exc:
        return exc.value
    return PyKCS11.CKR_OK


if "gcm" in sys.argv[2:]:
    aes = session.createObject([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
                                (PyKCS11.CKA_VALUE, bytes(range(32))), (PyKCS11.CKA_ENCRYPT, True),
                                (PyKCS11.CKA_TOKEN, False)])
    for iv_bits in (12345, 64, 96, 0):
        mechanism = PyKCS11.AES_GCM_Mechanism(bytes(range(12)), b"header", 128)
        mechanism._param.ulIvBits = iv_bits  # the field PyKCS11 leaves to the caller
        out[f"gcm_iv_bits_{iv_bits}"] = encrypt_init(aes, mechanism)
if "oaep" in sys.argv[2:]:
    public, _ = session.generateKeyPair(
        [(PyKCS11.CKA_MODULUS_BITS, 2048), (PyKCS11.CKA_ENCRYPT, True), (PyKCS11.CKA_TOKEN, False)],
        [(PyKCS11.CKA_DECRYPT, True), (PyKCS11.CKA_TOKEN, False)], PyKCS11.MechanismRSAGENERATEKEYPAIR)
    for source in (0, 2, PyKCS11.CKZ_DATA_SPECIFIED):
        mechanism = PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256)
        mechanism._param.source = source
        out[f"oaep_source_{source}"] = encrypt_init(public, mechanism)
session.logout()
print(json.dumps(out))
