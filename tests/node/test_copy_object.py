"""C_CopyObject (PKCS#11 3.0 §5.7): what a copy keeps, what its template may change, and who may copy."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from strongroom.errors import StrongroomError
from strongroom.mechanism_params import Mechanism
from strongroom.vocab import CKA, CKK, CKM, CKO, CKR

VALUE = bytes(range(32))


def _aes(logged, extra=None):
    template = {CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: VALUE, CKA.ENCRYPT: True,
                CKA.DECRYPT: True, CKA.LABEL: "source", **(extra or {})}
    return logged.app.create_object(logged.s, template)


def _ecb(logged, key):
    return logged.app.encrypt_once(logged.s, Mechanism(CKM.AES_ECB), key, bytes(16))


def _code(call) -> int:
    with pytest.raises(StrongroomError) as info:
        call()
    return info.value.ckr


def test_a_session_key_copied_to_the_token_keeps_its_material_and_takes_the_template(hsm, alice):
    source = _aes(alice)
    copy = alice.app.copy_object(alice.s, source, {CKA.TOKEN: True, CKA.LABEL: "copied", CKA.EXTRACTABLE: False})
    assert copy != source
    attrs = alice.app.get_attributes(alice.s, copy, [CKA.TOKEN, CKA.LABEL, CKA.EXTRACTABLE,
                                                     CKA.NEVER_EXTRACTABLE, CKA.CLASS])
    assert attrs[CKA.TOKEN] is True and attrs[CKA.LABEL] == "copied" and attrs[CKA.EXTRACTABLE] is False
    assert attrs[CKA.NEVER_EXTRACTABLE] is False  # the source was extractable: the history stays
    expected = Cipher(algorithms.AES(VALUE), modes.ECB()).encryptor().update(bytes(16))
    assert _ecb(alice, copy) == _ecb(alice, source) == expected
    assert hsm.repository.get_object(copy).is_token and not hsm.repository.get_object(source).is_token


def test_a_copy_obeys_the_one_way_rules_and_the_copyable_flag(hsm, alice, bob):
    source = _aes(alice, {CKA.EXTRACTABLE: False, CKA.TOKEN: True})
    assert _code(lambda: alice.app.copy_object(alice.s, source, {CKA.EXTRACTABLE: True})) \
        == CKR.ATTRIBUTE_READ_ONLY
    public = alice.app.copy_object(alice.s, source, {CKA.PRIVATE: False})  # still alice's alone
    assert _code(lambda: bob.app.copy_object(bob.s, public, {})) == CKR.OBJECT_HANDLE_INVALID
    assert _code(lambda: alice.app.copy_object(alice.s, source, {CKA.KEY_TYPE: CKK.GENERIC_SECRET})) \
        == CKR.ATTRIBUTE_READ_ONLY
    assert _code(lambda: alice.app.copy_object(alice.s, source, {CKA.UNWRAP: True})) \
        == CKR.ATTRIBUTE_READ_ONLY  # key separation: no copy gains the means to read back what was encrypted
    assert _code(lambda: bob.app.copy_object(bob.s, source, {})) == CKR.OBJECT_HANDLE_INVALID
    locked = alice.app.copy_object(alice.s, source, {CKA.COPYABLE: False, CKA.MODIFIABLE: False})
    assert _code(lambda: alice.app.copy_object(alice.s, locked, {})) == CKR.ACTION_PROHIBITED
    unmodifiable = alice.app.copy_object(alice.s, source, {CKA.MODIFIABLE: False})
    assert _code(lambda: alice.app.copy_object(alice.s, unmodifiable, {CKA.MODIFIABLE: True})) \
        == CKR.ATTRIBUTE_READ_ONLY
    assert _code(lambda: alice.app.copy_object(alice.s, unmodifiable, {CKA.LABEL: "x"})) == CKR.ACTION_PROHIBITED
    assert alice.app.copy_object(alice.s, unmodifiable, {CKA.TOKEN: False}) > 0


def test_objects_carry_unique_ids_and_certificates_the_standard_name_hash(hsm, alice):
    first, second = _aes(alice), _aes(alice, {CKA.TOKEN: True})
    copy = alice.app.copy_object(alice.s, second, {})
    ids = [alice.app.get_attributes(alice.s, h, [CKA.UNIQUE_ID])[CKA.UNIQUE_ID] for h in (first, second, copy)]
    assert len(set(ids)) == 3 and all(ids)
    cert = alice.app.create_object(alice.s, {CKA.CLASS: CKO.CERTIFICATE, CKA.CERTIFICATE_TYPE: 0,
                                            CKA.SUBJECT: b"\x30\x00", CKA.VALUE: b"\x30\x03\x02\x01\x01",
                                            CKA.TOKEN: False})
    assert alice.app.get_attributes(alice.s, cert, [CKA.NAME_HASH_ALGORITHM])[CKA.NAME_HASH_ALGORITHM] == CKM.SHA_1
