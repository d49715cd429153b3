"""Key calls (PKCS#11 3.0 §5.14–§5.18): generate, generate pair, wrap, unwrap, derive; random numbers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .. import crypto
from ..errors import (
    ArgumentsBad,
    AttributeValueInvalid,
    KeyHandleInvalid,
    KeyNotWrappable,
    KeySizeRange,
    KeyTypeInconsistent,
    MechanismInvalid,
    StrongroomError,
    UnwrappingKeyHandleInvalid,
    WrappedKeyInvalid,
    WrappingKeyHandleInvalid,
)
from ..mechanism_catalogue import IMPLEMENTED
from ..mechanism_catalogue import info as mechanism_info
from ..mechanism_params import Ecdh1DeriveParams, Mechanism, Sp800108Params
from ..mechanism_rules import check as check_parameter
from ..objects import policy, separation, templates, wrap_mechanisms
from ..objects.attributes import HMAC_KEY_TYPES, Attributes
from ..objects.model import HsmObject
from ..vocab import CKA, CKD, CKF, CKK, CKM, CKO
from . import arguments
from .base import SECRET_BYTES, ApplicationBase
from .commit import RequestContext, local_write
from .sessions import Session, deliver

_PRIVATE_KEY_CLASSES = {CKK.RSA: rsa.RSAPrivateKey, CKK.EC: ec.EllipticCurvePrivateKey,
                        CKK.EC_EDWARDS: ed25519.Ed25519PrivateKey}
_PUBLIC_IN_PRIVATE = (CKA.MODULUS, CKA.PUBLIC_EXPONENT, CKA.EC_PARAMS)


def _check_length(attrs: Attributes) -> None:
    """Refuse a ``CKA_VALUE_LEN`` the key type cannot have before any work is done.

    Raises:
        KeySizeRange: ``CKR_KEY_SIZE_RANGE``.
    """
    length = attrs.get(CKA.VALUE_LEN)
    if length is not None and length not in SECRET_BYTES[attrs[CKA.KEY_TYPE]]:
        sizes = "16, 24 or 32" if attrs[CKA.KEY_TYPE] is CKK.AES else "1-800"
        raise KeySizeRange(f"a CKK_{attrs[CKA.KEY_TYPE].name} key is {sizes} bytes, not {length}")


class KeyCalls(ApplicationBase):
    def _require_rights(self, session: Session, *made: Attributes) -> None:
        """Check, before any work is done, that this application may make keys of these attributes, and that
        public session keys of them fit under the public caps even before their values are counted.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` (:meth:`_require_object_rights`).
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` for a token key in a read-only session.
            DeviceMemory: ``CKR_DEVICE_MEMORY`` past the public session objects' caps.
        """
        for attrs in made:
            self._require_object_rights(attrs)
            self._require_writable(session, bool(attrs.get(CKA.TOKEN)))
        self.hsm.repository.check_public_room(self.id, [HsmObject(0, attrs) for attrs in made])

    def _generation(self, handle: int, mechanism: Mechanism, kinds: Collection[int],
                    what: str) -> tuple[Session, Mechanism, CKM]:
        """The session, checked mechanism and its ``CKM`` of a key generation (who may make the keys is checked
        on their templates, :meth:`_require_rights`).

        Raises:
            MechanismInvalid: ``CKR_MECHANISM_INVALID`` for a mechanism not in ``kinds``.
            MechanismParamInvalid: ``CKR_MECHANISM_PARAM_INVALID`` for any parameter (generation takes none).
        """
        session = self._session(handle)
        mechanism = arguments.mechanism(mechanism)
        if mechanism.mechanism not in kinds:
            raise MechanismInvalid(f"{self._mechanism_name(mechanism)} does not generate {what}")
        check_parameter(mechanism, self.hsm.machine.mode())  # key generation mechanisms take none
        return session, mechanism, CKM(mechanism.mechanism)

    def generate_key(self, handle: int, mechanism: Mechanism, template: dict[int, Any], *,
                     request: RequestContext | None = None) -> int:
        """``C_GenerateKey``: an AES or generic secret key of ``CKA_VALUE_LEN`` bytes, made inside the HSM.

        Raises:
            MechanismInvalid: ``CKR_MECHANISM_INVALID`` for a mechanism that does not generate secret keys.
            TemplateIncomplete, TemplateInconsistent, AttributeTypeInvalid, AttributeReadOnly: template errors.
            KeySizeRange: ``CKR_KEY_SIZE_RANGE`` for a length the key type does not have.
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without a crypto-user login, unless the key is a public
                session object (``CKA_TOKEN`` and ``CKA_PRIVATE`` false).
            SessionReadOnly: ``CKR_SESSION_READ_ONLY`` for a token key in a read-only session.
        """
        session, mechanism, mech = self._generation(handle, mechanism, templates.KEYGEN_TYPES, "secret keys")
        attrs = templates.for_generate(mech, self._template(template))
        self._require_rights(session, attrs)
        _check_length(attrs)
        value = crypto.generate_secret(mech, attrs[CKA.VALUE_LEN])
        self._secret_attributes(attrs, value)
        return self._create_objects(session, [(attrs, value)], "key-generate", request, mechanism=mech.name)[0]

    def generate_key_pair(self, handle: int, mechanism: Mechanism, public_template: dict[int, Any],
                          private_template: dict[int, Any], *,
                          request: RequestContext | None = None) -> tuple[int, int]:
        """``C_GenerateKeyPair``: RSA (``CKA_MODULUS_BITS``, ``CKA_PUBLIC_EXPONENT``), EC or Ed25519
        (``CKA_EC_PARAMS``, a DER OID) key pairs.

        Returns:
            ``(public key handle, private key handle)``.

        Raises:
            MechanismInvalid, TemplateIncomplete, TemplateInconsistent, KeySizeRange, CurveNotSupported,
            UserNotLoggedIn: as for :meth:`generate_key`.
        """
        session, mechanism, mech = self._generation(handle, mechanism, templates.KEYPAIR_TYPES, "key pairs")
        pub, priv = templates.for_key_pair(mech, self._template(public_template), self._template(private_template))
        self._require_rights(session, pub, priv)
        exponent = pub.get(CKA.PUBLIC_EXPONENT)
        sizes = mechanism_info(CKM.RSA_PKCS_KEY_PAIR_GEN, self.hsm.machine.mode())  # 2048 bits up unless NON_FIPS
        key = crypto.generate_key_pair(
            mech, modulus_bits=pub.get(CKA.MODULUS_BITS),
            public_exponent=int.from_bytes(exponent, "big") if exponent else 65537,
            ec_params=pub.get(CKA.EC_PARAMS), rsa_bits=(sizes.min_key_size, sizes.max_key_size))
        public_attrs = crypto.public_attributes(key)
        pub.update(public_attrs)
        priv.update({k: v for k, v in public_attrs.items() if k in _PUBLIC_IN_PRIVATE})
        made = [(pub, crypto.public_key_to_der(key.public_key())), (priv, crypto.private_key_to_der(key))]
        public, private = self._create_objects(session, made, "key-generate", request, mechanism=mech.name)
        return public, private

    def wrap_key(self, handle: int, mechanism: Mechanism, wrapping_key: int, key: int, *,
                 out_len: int | None = None, query: bool = False) -> bytes | int:
        """``C_WrapKey``: export a key encrypted under a wrapping key. Only the key's owner may wrap it.

        Returns:
            The wrapped key, or its length in bytes for a ``query``.

        Raises:
            WrappingKeyHandleInvalid, KeyHandleInvalid: unknown or invisible handles.
            KeyFunctionNotPermitted: ``CKR_KEY_FUNCTION_NOT_PERMITTED`` without ``CKA_WRAP`` on the wrapping key.
            KeyUnextractable: ``CKR_KEY_UNEXTRACTABLE`` for a key with ``CKA_EXTRACTABLE`` false.
            KeyNotWrappable: ``CKR_KEY_NOT_WRAPPABLE`` for a key the mechanism does not wrap
                (:mod:`strongroom.objects.wrap_mechanisms`: ``CKM_RSA_PKCS`` and ``CKM_RSA_PKCS_OAEP`` wrap secret
                keys only), wrap-with-trusted or wrap-template violations, a sensitive key under a key that
                can decrypt (:mod:`strongroom.objects.separation`), or a caller who does not own the key.
            BufferTooSmall: ``CKR_BUFFER_TOO_SMALL``.
        """
        self._session(handle)
        out_len = arguments.out_len(out_len)
        wrapper = self._key(wrapping_key, WrappingKeyHandleInvalid)
        target = self._key(key, KeyHandleInvalid)
        mechanism, _ = self._mechanism(mechanism, CKF.WRAP, wrapper)
        policy.require_usage(wrapper, CKA.WRAP, mechanism.mechanism)
        check_parameter(mechanism, self.hsm.machine.mode())
        if target.session is None and target.owner and (self.user is None or target.owner != self.user.name):
            raise KeyNotWrappable("only the key's owner may wrap it")
        policy.require_wrappable(target, wrapper)
        wrap_mechanisms.check_wrap(mechanism.mechanism, target.cls, len(target.material))
        separation.check_wrap(self._family(target), wrapper, self._family(wrapper))
        wrapped = crypto.wrap(mechanism, self.hsm.repository.key_object(wrapper), target.material)
        if not query and (out_len is None or out_len >= len(wrapped)):
            with local_write(self.hsm.store) as tx:  # wrapping changes nothing: this node's audit chain only
                tx.audit("key-wrap", self._actor(), peer=self.peer, handle=target.handle, wrapping_key=wrapper.handle,
                         mechanism=self._mechanism_name(mechanism))
        return deliver(wrapped, out_len, query)

    def unwrap_key(self, handle: int, mechanism: Mechanism, unwrapping_key: int, wrapped: bytes,
                   template: dict[int, Any], *, request: RequestContext | None = None) -> int:
        """``C_UnwrapKey``: import a wrapped secret key or PKCS#8 private key.

        The unwrapping key's ``CKA_UNWRAP_TEMPLATE`` is applied to the new key, which gets ``CKA_LOCAL``,
        ``CKA_ALWAYS_SENSITIVE`` and ``CKA_NEVER_EXTRACTABLE`` false. With ``CKM_AES_KEY_WRAP`` (no padding,
        RFC 3394) a secret key shorter than a multiple of 8 bytes was zero-padded when wrapped; give its
        ``CKA_VALUE_LEN`` and the padding is removed.

        Raises:
            UnwrappingKeyHandleInvalid: unknown or invisible unwrapping key.
            KeyFunctionNotPermitted: without ``CKA_UNWRAP`` on the unwrapping key, or for a secret unwrapping key
                that (or a key of its value) can encrypt (:mod:`strongroom.objects.separation`).
            AttributeReadOnly, TemplateInconsistent: a key the HSM already holds taken in again with fewer guards,
                more usages or as another type (:func:`strongroom.objects.separation.check_new_member`).
            WrappedKeyInvalid, WrappedKeyLenRange: the wrapped bytes do not unwrap to a key of the template's type.
            TemplateIncomplete, TemplateInconsistent: template errors (``CKA_CLASS``, ``CKA_KEY_TYPE`` required);
                ``CKR_TEMPLATE_INCONSISTENT`` too for a class the mechanism does not unwrap
                (:mod:`strongroom.objects.wrap_mechanisms`: a private key under ``CKM_RSA_PKCS`` or OAEP).
        """
        session = self._session(handle)
        wrapped = arguments.data(wrapped, "wrapped key")
        unwrapper = self._key(unwrapping_key, UnwrappingKeyHandleInvalid)
        mechanism, _ = self._mechanism(mechanism, CKF.UNWRAP, unwrapper)
        policy.require_usage(unwrapper, CKA.UNWRAP, mechanism.mechanism)
        check_parameter(mechanism, self.hsm.machine.mode())
        separation.check_unwrap(unwrapper, self._family(unwrapper))
        forced = unwrapper.attrs.get(CKA.UNWRAP_TEMPLATE) or {}
        asked = self._template(template)
        if isinstance(cls := forced.get(CKA.CLASS, asked.get(CKA.CLASS)), CKO):  # before the template's details
            wrap_mechanisms.check_unwrap(mechanism.mechanism, cls)
        attrs = templates.for_unwrap(asked, forced)
        self._require_rights(session, attrs)
        material = crypto.unwrap(mechanism, self.hsm.repository.key_object(unwrapper), wrapped)
        if attrs[CKA.CLASS] is CKO.SECRET_KEY:
            length = attrs.get(CKA.VALUE_LEN)
            if (mechanism.mechanism == CKM.AES_KEY_WRAP and length is not None and length < len(material)
                    and not any(material[length:])):
                material = material[:length]
            try:
                self._secret_attributes(attrs, material)
            except AttributeValueInvalid as exc:
                raise WrappedKeyInvalid(f"the unwrapped key does not fit the template: {exc.message}") from None
        else:
            try:
                key = crypto.private_key_from_der(material)
            except StrongroomError:
                raise WrappedKeyInvalid("the unwrapped bytes are not a PKCS#8 private key") from None
            if not isinstance(key, _PRIVATE_KEY_CLASSES[attrs[CKA.KEY_TYPE]]):
                raise WrappedKeyInvalid(
                    f"the unwrapped private key is not of CKA_KEY_TYPE CKK_{attrs[CKA.KEY_TYPE].name}")
            attrs.update({k: v for k, v in crypto.public_attributes(key).items() if k in _PUBLIC_IN_PRIVATE})
            material = crypto.private_key_to_der(key)
        family = self._family(HsmObject(0, attrs, material))
        separation.check_new_member(attrs, family)
        return self._create_objects(session, [(attrs, material)], "key-unwrap", request, family=family,
                                    unwrapping_key=unwrapper.handle, mechanism=self._mechanism_name(mechanism))[0]

    def derive_key(self, handle: int, mechanism: Mechanism, base_key: int, template: dict[int, Any], *,
                   request: RequestContext | None = None) -> int:
        """``C_DeriveKey``: ECDH (``CKM_ECDH1_DERIVE``) or NIST SP 800-108 counter KDF into a new secret key.

        ``CKA_VALUE_LEN`` is required, except for ECDH with ``CKD_NULL``, where it defaults to the whole shared
        secret.

        Raises:
            KeyHandleInvalid: unknown or invisible base key.
            KeyFunctionNotPermitted: without ``CKA_DERIVE`` on the base key.
            KeyTypeInconsistent: ``CKR_KEY_TYPE_INCONSISTENT`` for a legacy HMAC key (``CKK_SHA256_HMAC`` …) as
                the base of an SP 800-108 PRF of another hash.
            MechanismParamInvalid: bad parameters.
            KeySizeRange: ``CKR_KEY_SIZE_RANGE`` for a length the new key's type cannot have.
            TemplateIncomplete, TemplateInconsistent: template errors (``CKA_KEY_TYPE``, ``CKA_VALUE_LEN``).
        """
        session = self._session(handle)
        base = self._key(base_key, KeyHandleInvalid)
        mechanism, _ = self._mechanism(mechanism, CKF.DERIVE, base)
        policy.require_usage(base, CKA.DERIVE, mechanism.mechanism)
        check_parameter(mechanism, self.hsm.machine.mode())
        param = mechanism.parameter
        if isinstance(param, Sp800108Params) and base.key_type in HMAC_KEY_TYPES:
            prf = next((row for mech, row in IMPLEMENTED.items() if mech == param.prf_type), None)
            if prf is not None and base.key_type not in prf.key_types:  # an unknown PRF: the parameter check's
                raise KeyTypeInconsistent(f"a CKK_{CKK(base.key_type).name} key serves its own hash's HMAC only, "
                                          f"not the PRF CKM_{prf.mechanism.name}")
        whole_secret = (mechanism.mechanism == CKM.ECDH1_DERIVE and isinstance(param, Ecdh1DeriveParams)
                        and param.kdf == CKD.NULL)
        attrs = templates.for_derive(self._template(template), base.attrs, length_required=not whole_secret)
        self._require_rights(session, attrs)
        _check_length(attrs)
        value = crypto.derive(mechanism, self.hsm.repository.key_object(base), attrs.get(CKA.VALUE_LEN, 0))
        self._secret_attributes(attrs, value)
        family = self._family(HsmObject(0, attrs, value))
        separation.check_new_member(attrs, family)
        return self._create_objects(session, [(attrs, value)], "key-derive", request, family=family,
                                    base_key=base.handle,
                                    mechanism=self._mechanism_name(mechanism))[0]

    def generate_random(self, handle: int, length: int) -> bytes:
        """``C_GenerateRandom``: ``length`` bytes (at most 1 MiB) from the OS CSPRNG under the continuous
        health test; a failed test puts the node in the error state.

        Raises:
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a length that is not 0..1 MiB.
            DeviceError: ``CKR_DEVICE_ERROR`` when the random source fails its health test.
        """
        self._session(handle)
        length = arguments.ulong(length, "length")
        if length > arguments.MAX_RANDOM_BYTES:
            raise ArgumentsBad(f"one call returns at most {arguments.MAX_RANDOM_BYTES} random bytes")
        try:
            return crypto.random_bytes(length)
        except StrongroomError as exc:
            self.hsm.enter_error(f"random source failed its health test: {exc.message}")
            raise
