"""Power-on self-tests: known-answer tests through Strongroom's own operations, and the RNG health test.

Each known answer is a published vector, embedded here as constants (FIPS 140-3 IG 10.3.A asks for a
self-test per approved algorithm before first use):

- AES-GCM: NIST CAVS gcmEncryptExtIV128.rsp, [Keylen=128, IVlen=96, PTlen=128, AADlen=128, Taglen=128]
  Count 0; encrypted and decrypted.
- AES-KW: RFC 3394 §4.6 (256-bit key data under a 256-bit KEK); wrapped and unwrapped.
- SHA-256: FIPS 180-2 Appendix B.1 ("abc").
- HMAC-SHA-256: RFC 4231 §4.3 (test case 2); computed and verified.
- RSA: NIST CAVS SigGen15_186-2.txt, [mod = 2048], first SHA-256 case, with that file's key; PKCS#1 v1.5
  is deterministic, so the signature must match byte for byte, and then verify.
- ECDSA P-256: RFC 6979 §A.2.5 key; its SHA-256 "sample" signature must verify, and a fresh signature
  over a random message must verify (pairwise consistency).
- RNG: a fresh source passes the continuous test, and the process-wide source has not failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import ArgumentsBad, DeviceError, FipsSelfTestFailed
from ..mechanism_params import GcmParams, Mechanism
from ..vocab import CKM
from .ciphers import decrypt_init, encrypt_init
from .digests import digest_init
from .random import RandomSource, default_source, random_bytes
from .signatures import sign_init, verify_init
from .wrapping import unwrap, wrap


@dataclass(frozen=True)
class SelfTestResult:
    """Outcome of one self-test.

    Attributes:
        name: the test's name (one of :data:`SELF_TESTS`).
        passed: whether the computed answer matched the known one.
    """

    name: str
    passed: bool


_GCM_KEY = bytes.fromhex("c939cc13397c1d37de6ae0e1cb7c423c")
_GCM_IV = bytes.fromhex("b3d8cc017cbb89b39e0f67e2")
_GCM_PLAINTEXT = bytes.fromhex("c3b3c41f113a31b73d9a5cd432103069")
_GCM_AAD = bytes.fromhex("24825602bd12a984e0092d3e448eda5f")
_GCM_CIPHERTEXT_TAG = bytes.fromhex("93fe7d9e9bfd10348a5606e5cafa7354" "0032a1dc85f1c9786925a2e71d8272dd")

_KW_KEK = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
_KW_KEY_DATA = bytes.fromhex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f")
_KW_WRAPPED = bytes.fromhex(
    "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21"
)

_SHA256_MESSAGE = b"abc"
_SHA256_DIGEST = bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")

_HMAC_KEY = b"Jefe"
_HMAC_MESSAGE = b"what do ya want for nothing?"
_HMAC_SHA256 = bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")

_RSA_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDgsUuZzWHNPbnC
B2ZohBMk+jF08zzmb/1RQ5TTQXjSmklJMna2d3Iz59RqPmi8fKfomekB1U9t7gdJ
w+SN32hoWGfuKuZt+I61Y/bbE3qfaxdaES4O2oNo6I5F7+HOFLxgFtUmOWJwZq8Y
cscvYLkWHB0jfus0sPhBs/CJb5/g4WsPdDUtEBKSzEZKfnhhu+uG9t9hUcsmVBfG
bFZe2JdL2PyYTV3f1OuRo9UjTOG1Rn863jdfgC7AcpPxI276MGi8kbFYVRyHXF3A
qdb6Mhv5Qh8I3qyRDjXBwoVJ7o7tgzDPcFlf9wuUtJkH4naYqdkR96wHBq/LGko5
/rOLCoBJAgMBAAECggEAHbypLkJFwtV7+6diEMwGAptQJ1O3yCGjK3mfvTPJi0nb
ECJrHqwBQ8hXTvZSgzuWN00DTvhNqlVZxpPz8CjUlxa4Loej9oLyVCRWO9lAnc+d
CBEFAPc/dAdvKOdeAZmx8p+i9wuaMRkN7FTocqdA56Gx44w9EbyoJn3rhCzvQmIj
esh1clBo8yVjtHisqNapnzTLiHa5cUWy6FKeyK3qg+rU7GPj/y0Xov/vsFyQLKep
IWg3jIn3XJKPxPBwfkNIek9H33DK6H4kJywTbT6Yz1kGbUGj0DiFfQc9i00sJ7jw
6mv6UNJjCRpKGMY/RGvJph6MSmiDR7JDXsjnLt2upwKBgQD1Vgigu/Ioo8rCB1/N
Uc7o3Wb+SCWStbxDBS0h8qWFqeZixNL4wxuZg8Vq6g7mBlwrfbobnkwLJcJYwLop
+aINgy2BQMExd496U3HMjQLqCwgn+p5IuJBEYon7ncJmsOESYEfSXmi2A+bHtHBw
hH3IKeQxuktG9bCuR6n1TG3yqwKBgQDqdY1HiC/sz0gmoR1OgI+gITgUTK8ULjWR
1+JckbjeyGkUXdnOYEvarWGp1bWfNKsVF0FjhzDsw43wcR36cNpstY3boLrh+jVh
8vIK46hacRoFgoKIEJ62mxImsS8FfF5VStBBU53ztVWNWcBipfIvR8m8l5agxgTi
+Tb6X7O42wKBgQDB9AEgKVWZYVvzJudLJ6i/GgHJd3oU0Q4Dofz7QJww3o+fd+Ed
/wk7xRv2mRGsMkz9qQjPusZ9bZ2Gkt7aPlsp+ZGpBGt3UwEgAQYPY09xfcU17gDi
lt6e4ZQaUq8UhjN5VpqRKkf31X/GU9UsbuINs2iPE6tdbvD95vPrVD/7vwKBgQDj
4Gb1PF9gKcL1kKhcUUXHHCJWUIXl9leorYvb7uIg3eaLngAAvsVbACMpH4ZL+7PA
Zv7tzkr2A8ckB71cWW1iNT9wVJLu6fIShj9L6CML7FufOU7HEmhAEQ4ePx31lgBV
o8YviCa/5OIG5VHAT4vI+lwQCcGj93JubExMItIZ+wKBgQDedxrZ+OXur3LoMoc1
wupeDECmqtyLGlmFN6lusQjADKr35+wauVx9QkZMyiOb6XJJI0hjgHBb082ZvEOG
LpfspOkd7K1HJyHNRo5murrE4ogZljOHnBS0d8KKt7iiCG0e6ZsiSYZhYjwKCTPI
J3VB2sKXiMfNso3mhqIn477UDA==
-----END PRIVATE KEY-----
"""
_RSA_MESSAGE = bytes.fromhex(
    "6504921a97cd57aa8f3863dc32e1f2d0b57aff63106e59f6afc3f9726b459388bae16b3e224f6aa7f4f471f13606eda6"
    "e1f1ac2b4df9ef8de921c07c2f4c8598d7a3d6ec4b368cb85ce61a74338221118a303e821c0f277b591af6795f50c402"
    "26127a2efacce4662fd7076c109eb59b18005e7165f6294a6976436ee397774e"
)
_RSA_SIGNATURE = bytes.fromhex(
    "335ffadc0b1b8bd2b1eb670dd246e76dcccdc955a1687a15f74aa3e1596ebd43e607c640525f89dda95809cfd065f1be"
    "4e4a249477d24f400d4d4c9438a0af95b26b28b416e42aa950e2a52851b52132048f1b1ce944322fc99c1aabb49b7fae"
    "4c2f0fef674b50adee3bbb5c6c33822b608e4b9577275ca20c710af9fc41b1c01d9c0ff6f0d8324dc08e1a76e232d8fe"
    "aa06c73bbf64053bea35f1c528b2722764822ef1ff06246e75a9a22a10da4ea84fc2441bea24b35506f8447fcf69093c"
    "5d21ab0305cce2c7ea9ffac357c664b491fc55f2919ec490c38accbab378c252ac2df3845acff575ec7524cd2f586cca"
    "1497c74f24b299d6d6254c8cdb1d227d"
)

_ECDSA_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MEECAQAwEwYHKoZIzj0CAQYIKoZIzj0DAQcEJzAlAgEBBCDJr6nYRbp1FmtcIVdnsdaTTlDD2zbo
mxJ7imIrEg9nIQ==
-----END PRIVATE KEY-----
"""
_ECDSA_MESSAGE = b"sample"
_ECDSA_SIGNATURE = bytes.fromhex(
    "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
    "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"
)


def _corrupt(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x01]) + value[1:]


def _aes_gcm(fault: bool) -> bool:
    expected = _corrupt(_GCM_CIPHERTEXT_TAG) if fault else _GCM_CIPHERTEXT_TAG
    mech = Mechanism(CKM.AES_GCM, GcmParams(iv=_GCM_IV, aad=_GCM_AAD, tag_bits=128))
    if encrypt_init(mech, _GCM_KEY).oneshot(_GCM_PLAINTEXT) != expected:
        return False
    return decrypt_init(mech, _GCM_KEY).oneshot(expected) == _GCM_PLAINTEXT


def _aes_kw(fault: bool) -> bool:
    expected = _corrupt(_KW_WRAPPED) if fault else _KW_WRAPPED
    mech = Mechanism(CKM.AES_KEY_WRAP)
    if wrap(mech, _KW_KEK, _KW_KEY_DATA) != expected:
        return False
    return unwrap(mech, _KW_KEK, expected) == _KW_KEY_DATA


def _sha256(fault: bool) -> bool:
    expected = _corrupt(_SHA256_DIGEST) if fault else _SHA256_DIGEST
    operation = digest_init(Mechanism(CKM.SHA256))
    operation.update(_SHA256_MESSAGE)
    return operation.final() == expected


def _hmac_sha256(fault: bool) -> bool:
    expected = _corrupt(_HMAC_SHA256) if fault else _HMAC_SHA256
    mech = Mechanism(CKM.SHA256_HMAC)
    signer = sign_init(mech, _HMAC_KEY)
    signer.update(_HMAC_MESSAGE)
    if signer.final() != expected:
        return False
    verifier = verify_init(mech, _HMAC_KEY)
    verifier.update(_HMAC_MESSAGE)
    verifier.final(expected)
    return True


def _rsa(fault: bool) -> bool:
    expected = _corrupt(_RSA_SIGNATURE) if fault else _RSA_SIGNATURE
    key = serialization.load_pem_private_key(_RSA_KEY_PEM, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        return False
    mech = Mechanism(CKM.SHA256_RSA_PKCS)
    signer = sign_init(mech, key)
    signer.update(_RSA_MESSAGE)
    if signer.final() != expected:
        return False
    verifier = verify_init(mech, key.public_key())
    verifier.update(_RSA_MESSAGE)
    verifier.final(expected)
    return True


def _ecdsa(fault: bool) -> bool:
    expected = _corrupt(_ECDSA_SIGNATURE) if fault else _ECDSA_SIGNATURE
    key = serialization.load_pem_private_key(_ECDSA_KEY_PEM, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return False
    mech = Mechanism(CKM.ECDSA_SHA256)
    verifier = verify_init(mech, key.public_key())
    verifier.update(_ECDSA_MESSAGE)
    verifier.final(expected)
    message = random_bytes(32)
    signer = sign_init(mech, key)
    signer.update(message)
    verifier = verify_init(mech, key.public_key())
    verifier.update(message)
    verifier.final(signer.final())
    return True


def _stuck(n: int) -> bytes:
    return bytes(n)


def _rng(fault: bool) -> bool:
    source = RandomSource(read=_stuck) if fault else RandomSource()
    try:
        source.random_bytes(64)
    except DeviceError:
        return False
    return not default_source().failed


_TESTS: dict[str, Callable[[bool], bool]] = {
    "aes-gcm": _aes_gcm,
    "aes-kw": _aes_kw,
    "sha-256": _sha256,
    "hmac-sha256": _hmac_sha256,
    "rsa": _rsa,
    "ecdsa": _ecdsa,
    "rng": _rng,
}

SELF_TESTS: tuple[str, ...] = tuple(_TESTS)
"""Names of the self-tests, in the order they run; each is also a valid ``fault``."""


def run_self_tests(*, fault: str | None = None) -> list[SelfTestResult]:
    """Run every self-test once.

    Args:
        fault: name of one test whose expected answer is corrupted (for ``"rng"``: whose source is stuck),
            so callers can prove that a failure is detected; ``None`` in production.

    Returns:
        One :class:`SelfTestResult` per test, in :data:`SELF_TESTS` order.

    Raises:
        ArgumentsBad: (``CKR_ARGUMENTS_BAD``) ``fault`` names no test.
    """
    if fault is not None and fault not in _TESTS:
        raise ArgumentsBad(f"no self-test is named {fault!r}")
    results = []
    for name, test in _TESTS.items():
        # Any exception, ours or the library's, means the algorithm cannot be trusted: a failed test.
        try:
            passed = test(name == fault)
        except Exception:
            passed = False
        results.append(SelfTestResult(name, passed))
    return results


def require_self_tests(*, fault: str | None = None) -> list[SelfTestResult]:
    """Run the self-tests and insist that all pass, as a node must before serving.

    Raises:
        FipsSelfTestFailed: (``CKR_FIPS_SELF_TEST_FAILED``) naming the failed tests.
        ArgumentsBad: as :func:`run_self_tests`.
    """
    results = run_self_tests(fault=fault)
    failed = [result.name for result in results if not result.passed]
    if failed:
        raise FipsSelfTestFailed(f"self-tests failed: {', '.join(failed)}")
    return results
