"""Encryption and decryption operations (``C_EncryptInit`` … ``C_DecryptFinal``).

AES: ECB, CBC, CBC with PKCS#7 padding (NIST SP 800-38A), CTR (SP 800-38A §6.5), GCM (SP 800-38D), key
wrap (RFC 3394) and key wrap with padding (RFC 5649) as single-part ciphers. RSA: PKCS#1 v1.5 and OAEP
(RFC 8017 §7). Every primitive is ``cryptography``'s; this module adds PKCS#11's buffering rules so that
:meth:`CipherOperation.update_size` can tell the exact output length before any data is processed.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import keywrap, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import (
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    MechanismInvalid,
    MechanismParamInvalid,
    PKCS11Error,
)
from ..mechanism_params import CtrParams, GcmParams, Mechanism, OaepParams
from ..mechanism_rules import GCM_TAG_BITS
from ..mechanism_rules import check as check_parameter
from ..vocab import CKM, CKZ
from . import keycheck, raw_rsa
from .digests import mgf_hash, param_hash
from .random import random_bytes

AES_BLOCK = 16
GCM_IV_BYTES = 12
KEY_WRAP_SEMIBLOCK = 8


class CipherOperation(ABC):
    """One encryption or decryption in progress.

    Attributes:
        generated_iv: the 12-byte IV the HSM chose when ``AES_GCM`` encryption was given an empty IV;
            ``None`` otherwise. The caller must store it with the ciphertext.
    """

    generated_iv: bytes | None = None

    @abstractmethod
    def update_size(self, data_len: int) -> int:
        """The exact byte count :meth:`update` would return for ``data_len`` input bytes; changes nothing."""

    @abstractmethod
    def update(self, data: bytes) -> bytes:
        """Process ``data``; return the output that is complete (``C_EncryptUpdate``/``C_DecryptUpdate``)."""

    @abstractmethod
    def final(self) -> bytes:
        """Finish and return the remaining output (``C_EncryptFinal``/``C_DecryptFinal``); call once.

        Raises:
            DataLenRange: (``CKR_DATA_LEN_RANGE``) plaintext not block-aligned (ECB, CBC) or too long (RSA).
            EncryptedDataLenRange: (``CKR_ENCRYPTED_DATA_LEN_RANGE``) ciphertext of an impossible length.
            EncryptedDataInvalid: (``CKR_ENCRYPTED_DATA_INVALID``) bad padding, GCM tag or unwrap check.
        """

    def oneshot(self, data: bytes) -> bytes:
        """Single-part ``C_Encrypt``/``C_Decrypt``: :meth:`update` then :meth:`final`."""
        return self.update(data) + self.final()


class _BlockOperation(CipherOperation):
    """ECB, CBC and CBC-PAD: whole blocks go out at once, a partial block waits for more data.

    Padded decryption also holds back the last whole block, since only final() can tell whether it carries
    the padding.
    """

    def __init__(self, context: CipherContext, *, encrypt: bool, pad: bool) -> None:
        self._context = context
        self._encrypt = encrypt
        self._pad = pad
        self._pending = b""

    def _releasable(self, total: int) -> int:
        if self._pad and not self._encrypt:
            return max(0, (total - 1) // AES_BLOCK) * AES_BLOCK
        return total // AES_BLOCK * AES_BLOCK

    def update_size(self, data_len: int) -> int:
        return self._releasable(len(self._pending) + data_len)

    def update(self, data: bytes) -> bytes:
        buffered = self._pending + data
        cut = self._releasable(len(buffered))
        self._pending = buffered[cut:]
        return self._context.update(buffered[:cut])

    def final(self) -> bytes:
        pending = self._pending
        if self._encrypt:
            if self._pad:
                padder = padding.PKCS7(AES_BLOCK * 8).padder()
                padded = padder.update(pending) + padder.finalize()
                return self._context.update(padded) + self._context.finalize()
            if pending:
                raise DataLenRange("plaintext must be a multiple of 16 bytes")
            return self._context.finalize()
        if self._pad:
            if len(pending) != AES_BLOCK:
                raise EncryptedDataLenRange("ciphertext must be a non-empty multiple of 16 bytes")
            block = self._context.update(pending) + self._context.finalize()
            unpadder = padding.PKCS7(AES_BLOCK * 8).unpadder()
            try:
                return unpadder.update(block) + unpadder.finalize()
            except ValueError as exc:
                raise EncryptedDataInvalid("decryption failed") from exc
        if pending:
            raise EncryptedDataLenRange("ciphertext must be a multiple of 16 bytes")
        return self._context.finalize()


class _StreamOperation(CipherOperation):
    """CTR and GCM encryption: every input byte yields one output byte at once."""

    def __init__(
        self,
        context: CipherContext,
        *,
        finish: Callable[[], bytes],
        limit: int | None = None,
        too_long: type[PKCS11Error] = DataLenRange,
    ) -> None:
        self._context = context
        self._finish = finish
        self._limit = limit
        self._too_long = too_long
        self._processed = 0

    def update_size(self, data_len: int) -> int:
        return data_len

    def update(self, data: bytes) -> bytes:
        if self._limit is not None and self._processed + len(data) > self._limit:
            raise self._too_long("the counter block would wrap within this message")
        self._processed += len(data)
        return self._context.update(data)

    def final(self) -> bytes:
        return self._finish()


class _BufferedOperation(CipherOperation):
    """Everything happens in final(): GCM decryption (no plaintext before the tag is checked), RSA and the
    single-part key-wrap ciphers."""

    def __init__(self, finish: Callable[[bytes], bytes]) -> None:
        self._finish = finish
        self._parts: list[bytes] = []

    def update_size(self, data_len: int) -> int:
        return 0

    def update(self, data: bytes) -> bytes:
        self._parts.append(bytes(data))
        return b""

    def final(self) -> bytes:
        return self._finish(b"".join(self._parts))


def _aes(key: object, mode: modes.ECB | modes.CBC | modes.CTR, encrypt: bool) -> CipherContext:
    """An AES encryption or decryption context for a mode without a tag (GCM has its own).

    Raises:
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) ``key`` is not a secret key's bytes.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) not 16, 24 or 32 bytes.
    """
    cipher = Cipher(algorithms.AES(keycheck.aes_key(key)), mode)
    return cipher.encryptor() if encrypt else cipher.decryptor()


def _cbc_iv(mech: Mechanism) -> bytes:
    iv = mech.parameter
    if not isinstance(iv, bytes) or len(iv) != AES_BLOCK:
        raise MechanismParamInvalid("AES-CBC needs a 16-byte IV")
    return iv


def _ecb(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    return _BlockOperation(_aes(key, modes.ECB(), encrypt), encrypt=encrypt, pad=False)  # noqa: S305 - CKM_AES_ECB


def _cbc(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    iv = _cbc_iv(mech)
    return _BlockOperation(_aes(key, modes.CBC(iv), encrypt), encrypt=encrypt, pad=False)


def _cbc_pad(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    iv = _cbc_iv(mech)
    return _BlockOperation(_aes(key, modes.CBC(iv), encrypt), encrypt=encrypt, pad=True)


def _ctr(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    params = mech.parameter
    if not isinstance(params, CtrParams) or len(params.cb) != AES_BLOCK:
        raise MechanismParamInvalid("AES-CTR needs CtrParams with a 16-byte counter block")
    if not 1 <= params.counter_bits <= 128:
        raise MechanismParamInvalid("counter_bits must be 1..128")
    context = _aes(key, modes.CTR(params.cb), encrypt)
    # cryptography increments all 128 bits; stopping before the low counter_bits would carry into the
    # nonce part keeps the output that of a counter_bits-wide counter (PKCS#11 3.0 "AES with Counter").
    start = int.from_bytes(params.cb, "big") & ((1 << params.counter_bits) - 1)
    blocks = (1 << params.counter_bits) - start
    return _StreamOperation(
        context,
        finish=context.finalize,
        limit=blocks * AES_BLOCK,
        too_long=DataLenRange if encrypt else EncryptedDataLenRange,
    )


@functools.lru_cache(maxsize=1024)
def _aesgcm(key: bytes) -> AESGCM:
    """One AEAD object per key: building it costs more than sealing a short message."""
    return AESGCM(key)


def forget_keys() -> None:
    """Drop every cached per-key object (on zeroisation)."""
    _aesgcm.cache_clear()


class _GcmEncrypt(CipherOperation):
    """GCM encryption: streaming once ``update`` is called; a single-part call seals in one AEAD call."""

    def __init__(self, key: bytes, iv: bytes, aad: bytes, tag_len: int) -> None:
        self._key, self._iv, self._aad, self._tag_len = key, iv, aad, tag_len
        self._stream: _StreamOperation | None = None

    def _streaming(self) -> _StreamOperation:
        if self._stream is None:
            encryptor = Cipher(algorithms.AES(self._key), modes.GCM(self._iv)).encryptor()
            encryptor.authenticate_additional_data(self._aad)
            self._stream = _StreamOperation(
                encryptor, finish=lambda: encryptor.finalize() + encryptor.tag[:self._tag_len])
        return self._stream

    def update_size(self, data_len: int) -> int:
        return data_len

    def update(self, data: bytes) -> bytes:
        return self._streaming().update(data)

    def final(self) -> bytes:
        return self._streaming().final()

    def oneshot(self, data: bytes) -> bytes:
        if self._stream is not None:
            return super().oneshot(data)
        sealed = _aesgcm(self._key).encrypt(self._iv, data, self._aad)
        return sealed[:len(sealed) - 16 + self._tag_len]  # a shorter GCM tag is the full tag's prefix


def _gcm(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    params = mech.parameter
    if not isinstance(params, GcmParams):
        raise MechanismParamInvalid("AES-GCM needs GcmParams")
    if params.tag_bits not in GCM_TAG_BITS:
        raise MechanismParamInvalid("the GCM tag must be 96..128 bits in steps of 8")
    aes_key = keycheck.aes_key(key)
    tag_len = params.tag_bits // 8
    iv = params.iv
    generated = None
    if not iv and encrypt:
        iv = generated = random_bytes(GCM_IV_BYTES)
    if len(iv) != GCM_IV_BYTES:
        raise MechanismParamInvalid("the GCM IV must be 12 bytes (or empty to have one generated)")

    if encrypt:
        operation: CipherOperation = _GcmEncrypt(bytes(aes_key), iv, params.aad, tag_len)
        operation.generated_iv = generated
        return operation

    def finish_decrypt(data: bytes) -> bytes:
        if len(data) < tag_len:
            raise EncryptedDataLenRange("the ciphertext is shorter than the GCM tag")
        if tag_len == 16:
            try:
                return _aesgcm(bytes(aes_key)).decrypt(iv, data, params.aad)
            except InvalidTag as exc:
                raise EncryptedDataInvalid("decryption failed") from exc
        decryptor = Cipher(algorithms.AES(aes_key), modes.GCM(iv, min_tag_length=tag_len)).decryptor()
        decryptor.authenticate_additional_data(params.aad)
        plaintext = decryptor.update(data[:-tag_len])
        try:
            return plaintext + decryptor.finalize_with_tag(data[-tag_len:])
        except InvalidTag as exc:
            raise EncryptedDataInvalid("decryption failed") from exc

    return _BufferedOperation(finish_decrypt)


def _key_wrap(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    # Only the default initial values of RFC 3394 §2.2.3.1 / RFC 5649 §3 are supported: cryptography's key
    # wrap takes no alternative IV.
    aes_key = keycheck.aes_key(key)
    padded = mech.mechanism != CKM.AES_KEY_WRAP

    def wrap(data: bytes) -> bytes:
        if padded:
            if not data:
                raise DataLenRange("cannot wrap empty data")
            return keywrap.aes_key_wrap_with_padding(aes_key, data)
        if len(data) < 2 * KEY_WRAP_SEMIBLOCK or len(data) % KEY_WRAP_SEMIBLOCK:
            raise DataLenRange("AES key wrap needs a multiple of 8 bytes, at least 16")
        return keywrap.aes_key_wrap(aes_key, data)

    def unwrap(data: bytes) -> bytes:
        shortest = 2 if padded else 3
        if len(data) < shortest * KEY_WRAP_SEMIBLOCK or len(data) % KEY_WRAP_SEMIBLOCK:
            raise EncryptedDataLenRange(f"wrapped data must be a multiple of 8 bytes, {shortest * 8} or more")
        try:
            if padded:
                return keywrap.aes_key_unwrap_with_padding(aes_key, data)
            return keywrap.aes_key_unwrap(aes_key, data)
        except keywrap.InvalidUnwrap as exc:
            raise EncryptedDataInvalid("decryption failed") from exc

    return _BufferedOperation(wrap if encrypt else unwrap)


def _oaep_padding(params: object) -> rsa_padding.OAEP:
    # The MGF1 hash may differ from the OAEP hash (PKCS#11 3.0 §2.1.8; SHA-256 with MGF1-SHA1 is common);
    # source_data is the label (RFC 8017 §7.1.1 L).
    if not isinstance(params, OaepParams):
        raise MechanismParamInvalid("RSA-OAEP needs OaepParams")
    algorithm = param_hash(params.hash_alg)
    mgf = mgf_hash(params.mgf)
    if params.source not in (0, CKZ.DATA_SPECIFIED) or (params.source == 0 and params.source_data):
        raise MechanismParamInvalid("the OAEP label needs source CKZ_DATA_SPECIFIED")
    return rsa_padding.OAEP(mgf=rsa_padding.MGF1(mgf), algorithm=algorithm, label=params.source_data or None)


def _rsa(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    if mech.mechanism == CKM.RSA_PKCS:
        scheme: rsa_padding.AsymmetricPadding = rsa_padding.PKCS1v15()
        overhead = 11  # RFC 8017 §7.2.1: mLen <= k - 11
    else:
        scheme = _oaep_padding(mech.parameter)
        overhead = 2 * scheme.algorithm.digest_size + 2  # RFC 8017 §7.1.1: mLen <= k - 2hLen - 2

    if encrypt:
        public = keycheck.rsa_public(key, mech.mechanism)
        size = (public.key_size + 7) // 8

        def encrypt_all(data: bytes) -> bytes:
            if len(data) > size - overhead:
                raise DataLenRange(f"at most {size - overhead} bytes fit this key and padding")
            return public.encrypt(data, scheme)

        return _BufferedOperation(encrypt_all)

    private = keycheck.rsa_private(key, mech.mechanism)
    size = (private.key_size + 7) // 8

    def decrypt_all(data: bytes) -> bytes:
        if len(data) != size:
            raise EncryptedDataLenRange(f"RSA ciphertext must be {size} bytes")
        # OpenSSL applies implicit rejection to PKCS#1 v1.5 (the Marvin attack countermeasure): malformed
        # padding yields a deterministic pseudo-random message instead of an error, so only OAEP fails here.
        try:
            return private.decrypt(data, scheme)
        except ValueError as exc:
            raise EncryptedDataInvalid("decryption failed") from exc

    return _BufferedOperation(decrypt_all)


def _raw_rsa(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    if encrypt:
        public = keycheck.rsa_public(key, mech.mechanism)
        return _BufferedOperation(lambda data: raw_rsa.public_operation(public, data))
    private = keycheck.rsa_private(key, mech.mechanism)
    return _BufferedOperation(lambda data: raw_rsa.private_operation(private, data, ciphertext=True))


_BUILDERS: dict[int, Callable[[Mechanism, object, bool], CipherOperation]] = {
    CKM.AES_ECB: _ecb,
    CKM.AES_CBC: _cbc,
    CKM.AES_CBC_PAD: _cbc_pad,
    CKM.AES_CTR: _ctr,
    CKM.AES_GCM: _gcm,
    CKM.AES_KEY_WRAP: _key_wrap,
    CKM.AES_KEY_WRAP_PAD: _key_wrap,
    CKM.AES_KEY_WRAP_KWP: _key_wrap,
    CKM.RSA_PKCS: _rsa,
    CKM.RSA_PKCS_OAEP: _rsa,
    CKM.RSA_X_509: _raw_rsa,
}


def _init(mech: Mechanism, key: object, encrypt: bool) -> CipherOperation:
    builder = _BUILDERS.get(mech.mechanism)
    if builder is None:
        raise MechanismInvalid(f"mechanism 0x{mech.mechanism:x} does not encrypt")
    check_parameter(mech)  # the table of parameter rules every door shares; key-bound checks follow
    return builder(mech, key, encrypt)


def encrypt_init(mech: Mechanism, key: object) -> CipherOperation:
    """Start an encryption (``C_EncryptInit``).

    Args:
        mech: one of

            - ``AES_ECB`` (no parameter), ``AES_CBC`` / ``AES_CBC_PAD`` (16-byte IV ``bytes``);
            - ``AES_CTR`` (:class:`CtrParams`), ``AES_GCM`` (:class:`GcmParams`; an empty IV has the HSM
              generate 12 bytes, returned in ``generated_iv``; output is ciphertext‖tag);
            - ``AES_KEY_WRAP`` (RFC 3394), ``AES_KEY_WRAP_PAD`` and ``AES_KEY_WRAP_KWP`` (both RFC 5649),
              single-part, no parameter;
            - ``RSA_PKCS`` (no parameter), ``RSA_PKCS_OAEP`` (:class:`OaepParams`), single-part.
        key: AES key ``bytes`` (16, 24, 32) or an ``RSAPublicKey``.

    Raises:
        MechanismInvalid: (``CKR_MECHANISM_INVALID``) not an encryption mechanism.
        MechanismParamInvalid: (``CKR_MECHANISM_PARAM_INVALID``) wrong parameter type or value (IV length,
            tag bits, counter bits, OAEP hash/MGF mismatch).
        KeyTypeInconsistent: (``CKR_KEY_TYPE_INCONSISTENT``) a key of the wrong kind.
        KeySizeRange: (``CKR_KEY_SIZE_RANGE``) a key of an unsupported size.
        DeviceError: (``CKR_DEVICE_ERROR``) the RNG failed while generating a GCM IV.
    """
    return _init(mech, key, True)


def decrypt_init(mech: Mechanism, key: object) -> CipherOperation:
    """Start a decryption (``C_DecryptInit``); mechanisms and parameters as :func:`encrypt_init`.

    GCM decryption returns nothing from :meth:`CipherOperation.update`; the plaintext comes from ``final``
    after the tag (the last ``tag_bits / 8`` bytes of the input) is verified. Keys: AES ``bytes`` or an
    ``RSAPrivateKey``. An empty GCM IV raises ``MechanismParamInvalid``.
    """
    return _init(mech, key, False)
