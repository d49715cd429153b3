from strongroom.vocab import CKA, CKM


def test_generate_encrypt_decrypt(alice):
    key = alice.generate_key(CKM.AES_KEY_GEN, value_len=32, label="smoke", encrypt=True, decrypt=True)
    sealed = key.encrypt(b"secret")
    assert len(sealed) == 12 + 6 + 16
    assert key.decrypt(sealed) == b"secret"
    assert key[CKA.LABEL] == "smoke"
    assert alice.find(label="smoke") == [key]
