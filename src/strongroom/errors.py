"""One exception tree for all of Strongroom; every class carries its ``CKR_*`` code.

::

    StrongroomError                 base; ``.ckr`` is the PKCS#11 return value, ``.retryable`` tells clients
     ├── PKCS11Error                one subclass per ``CKR_*`` value (``PinIncorrect`` is ``CKR_PIN_INCORRECT``)
     │    ├── BufferTooSmall        carries ``.required``, the output length in bytes the call needs
     │    ├── DeviceError           ``CKR_DEVICE_ERROR``; the node's error state and failed self-tests
     │    │    └── StoreIntegrityError   a masked row failed authentication; the store was refused
     │    ├── DeviceRemoved         ``CKR_DEVICE_REMOVED``
     │    │    └── client.connection.ConnectionLost   the connection to an HSM closed; retryable
     │    └── NoQuorum, NodeBehind  Strongroom's vendor-defined codes (:mod:`strongroom.vendor`); retryable
     ├── AuthError                  category: PIN, login and user-type errors (``PinIncorrect``, ``PinLocked``,
     │    │                         ``UserNotLoggedIn``, ``UserTypeInvalid`` …)
     │    ├── control.sigv4.SignatureError        a control-plane request whose SigV4 signature does not check out
     │    └── control.api_errors.AccessDenied
     ├── KeyPolicyError             category: a key's functions, its attributes or a template break policy
     │                              (``KeyFunctionNotPermitted``, ``KeyUnextractable``, ``AttributeSensitive``,
     │                              ``TemplateInconsistent`` …)
     ├── TransportError             category: connection and cluster errors (``DeviceRemoved``, ``NoQuorum``,
     │    │                         ``NodeBehind``); ``.retryable`` says whether sending again may succeed
     │    ├── pkcs11.wire.WireError               a p11-kit frame that breaks the protocol (also a ``ValueError``)
     │    └── control.provider.ProviderError      an HSM could not be started or stopped
     ├── ArgumentError              category: bad arguments (``ArgumentsBad``, ``MechanismInvalid``, an invalid
     │    │                         handle, a length out of range …)
     │    └── control.api_errors.InvalidRequest, SerializationError, TagError, ResourceNotFound
     ├── control.api_errors.ApiError          the cloudhsmv2 API's answers (``code`` is the JSON ``__type``)
     ├── control.api_client.ControlError      an error answer the cloudhsmv2 API sent a Strongroom tool
     ├── control.process.AlreadyRunning        another process holds the directory
     └── CliError                             a ``strongroom-cli`` command line that cannot be run

A PKCS#11 class sits under ``PKCS11Error`` and, where it has one, under its category too
(``class PinIncorrect(PKCS11Error, AuthError)``), so ``except AuthError`` catches every login failure whatever
its code. :data:`OUTCOMES` maps a ``CKR_*`` value to what the error becomes at the outer edges: the control
plane's HTTP status and the command line's exit code.

Foreign exceptions (``sqlite3``, ``cryptography``) are translated at the layer that meets them and chained
with ``from``. :func:`error_for` maps a ``CKR`` value read off the wire back to its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from .vendor import CKR_VENDOR_NAMES, CKR_VENDOR_NO_QUORUM, CKR_VENDOR_NODE_BEHIND
from .vocab import CKR

__all__ = [
    "DEFAULT_OUTCOME",
    "OUTCOMES",
    "ActionProhibited",
    "AeadDecryptFailed",
    "ArgumentError",
    "ArgumentsBad",
    "AttributeReadOnly",
    "AttributeSensitive",
    "AttributeTypeInvalid",
    "AttributeValueInvalid",
    "AuthError",
    "BufferTooSmall",
    "Cancel",
    "CantLock",
    "CryptokiAlreadyInitialized",
    "CryptokiNotInitialized",
    "CurveNotSupported",
    "DataInvalid",
    "DataLenRange",
    "DeviceError",
    "DeviceMemory",
    "DeviceRemoved",
    "DomainParamsInvalid",
    "EncryptedDataInvalid",
    "EncryptedDataLenRange",
    "ExceededMaxIterations",
    "FipsSelfTestFailed",
    "FunctionCanceled",
    "FunctionFailed",
    "FunctionNotParallel",
    "FunctionNotSupported",
    "FunctionRejected",
    "GeneralError",
    "HostMemory",
    "InformationSensitive",
    "KeyChanged",
    "KeyFunctionNotPermitted",
    "KeyHandleInvalid",
    "KeyIndigestible",
    "KeyNeeded",
    "KeyNotNeeded",
    "KeyNotWrappable",
    "KeyPolicyError",
    "KeySizeRange",
    "KeyTypeInconsistent",
    "KeyUnextractable",
    "LibraryLoadFailed",
    "MechanismInvalid",
    "MechanismParamInvalid",
    "MutexBad",
    "MutexNotLocked",
    "NeedToCreateThreads",
    "NewPinMode",
    "NextOtp",
    "NoEvent",
    "NoQuorum",
    "NodeBehind",
    "ObjectHandleInvalid",
    "OperationActive",
    "OperationCancelFailed",
    "OperationNotInitialized",
    "Outcome",
    "PKCS11Error",
    "PinExpired",
    "PinIncorrect",
    "PinInvalid",
    "PinLenRange",
    "PinLocked",
    "PinTooWeak",
    "PublicKeyInvalid",
    "RandomNoRng",
    "RandomSeedNotSupported",
    "SavedStateInvalid",
    "SessionClosed",
    "SessionCount",
    "SessionExists",
    "SessionHandleInvalid",
    "SessionParallelNotSupported",
    "SessionReadOnly",
    "SessionReadOnlyExists",
    "SessionReadWriteSoExists",
    "SignatureInvalid",
    "SignatureLenRange",
    "SlotIdInvalid",
    "StateUnsaveable",
    "StoreIntegrityError",
    "StrongroomError",
    "TemplateIncomplete",
    "TemplateInconsistent",
    "TokenNotPresent",
    "TokenNotRecognized",
    "TokenResourceExceeded",
    "TokenWriteProtected",
    "TransportError",
    "UnwrappingKeyHandleInvalid",
    "UnwrappingKeySizeRange",
    "UnwrappingKeyTypeInconsistent",
    "UserAlreadyLoggedIn",
    "UserAnotherAlreadyLoggedIn",
    "UserNotLoggedIn",
    "UserPinNotInitialized",
    "UserTooManyTypes",
    "UserTypeInvalid",
    "WrappedKeyInvalid",
    "WrappedKeyLenRange",
    "WrappingKeyHandleInvalid",
    "WrappingKeySizeRange",
    "WrappingKeyTypeInconsistent",
    "error_for",
    "exit_code",
    "http_status",
    "outcome",
]


class StrongroomError(Exception):
    """Base of every Strongroom error.

    Args:
        message: human-readable detail; the ``CKR_*`` name when not given.

    Attributes:
        ckr: the PKCS#11 return value that represents this error on the wire and through PKCS#11 (a ``CKR``
            member, or one of Strongroom's vendor-defined values in :mod:`strongroom.vendor`).
        retryable: whether the same request may succeed when sent again (to this node or another).
        message: the detail given, or the ``CKR_*`` name.
    """

    ckr: int = CKR.GENERAL_ERROR
    retryable: bool = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.ckr_name)
        self.message = message or self.ckr_name

    @property
    def ckr_name(self) -> str:
        """The ``CKR_*`` name of the code (Strongroom's vendor-defined codes by their own names)."""
        try:
            return "CKR_" + CKR(self.ckr).name
        except ValueError:
            return CKR_VENDOR_NAMES.get(int(self.ckr), f"CKR_VENDOR_DEFINED|0x{int(self.ckr) & 0x7FFFFFFF:x}")


class AuthError(StrongroomError):
    """Category: a PIN, login or user-type error (PKCS#11 3.0 §5.6: ``C_Login``, ``C_SetPIN``), or a control-plane
    request whose credentials do not check out. Catch it to handle every way a login can fail."""


class KeyPolicyError(StrongroomError):
    """Category: what a key may do, which of its attributes may be read or changed, or a template that breaks the
    object policy (PKCS#11 3.0 §4.4 attribute rules, §4.9 key usage flags, §10.2 wrap and unwrap rules)."""


class TransportError(StrongroomError):
    """Category: an error of the connection or the cluster rather than of the request: an HSM gone, no majority,
    a replica behind, bytes that break the protocol. ``retryable`` says whether the same request may succeed
    when sent again."""


class ArgumentError(StrongroomError):
    """Category: the caller's arguments cannot be served as given (a bad value, an unknown handle or mechanism,
    a length out of range); sending the same request again gives the same error."""


class PKCS11Error(StrongroomError):
    """An error that PKCS#11 names; the subclass tells which ``CKR_*`` value."""


class Cancel(PKCS11Error):
    """``CKR_CANCEL``."""

    ckr = CKR.CANCEL


class HostMemory(PKCS11Error):
    """``CKR_HOST_MEMORY``."""

    ckr = CKR.HOST_MEMORY


class SlotIdInvalid(PKCS11Error, ArgumentError):
    """``CKR_SLOT_ID_INVALID``."""

    ckr = CKR.SLOT_ID_INVALID


class GeneralError(PKCS11Error):
    """``CKR_GENERAL_ERROR``."""

    ckr = CKR.GENERAL_ERROR


class FunctionFailed(PKCS11Error):
    """``CKR_FUNCTION_FAILED``."""

    ckr = CKR.FUNCTION_FAILED


class ArgumentsBad(PKCS11Error, ArgumentError):
    """``CKR_ARGUMENTS_BAD``."""

    ckr = CKR.ARGUMENTS_BAD


class NoEvent(PKCS11Error):
    """``CKR_NO_EVENT``."""

    ckr = CKR.NO_EVENT


class NeedToCreateThreads(PKCS11Error):
    """``CKR_NEED_TO_CREATE_THREADS``."""

    ckr = CKR.NEED_TO_CREATE_THREADS


class CantLock(PKCS11Error):
    """``CKR_CANT_LOCK``."""

    ckr = CKR.CANT_LOCK


class AttributeReadOnly(PKCS11Error, KeyPolicyError):
    """``CKR_ATTRIBUTE_READ_ONLY``."""

    ckr = CKR.ATTRIBUTE_READ_ONLY


class AttributeSensitive(PKCS11Error, KeyPolicyError):
    """``CKR_ATTRIBUTE_SENSITIVE``."""

    ckr = CKR.ATTRIBUTE_SENSITIVE


class AttributeTypeInvalid(PKCS11Error, KeyPolicyError):
    """``CKR_ATTRIBUTE_TYPE_INVALID``."""

    ckr = CKR.ATTRIBUTE_TYPE_INVALID


class AttributeValueInvalid(PKCS11Error, KeyPolicyError):
    """``CKR_ATTRIBUTE_VALUE_INVALID``."""

    ckr = CKR.ATTRIBUTE_VALUE_INVALID


class ActionProhibited(PKCS11Error, KeyPolicyError):
    """``CKR_ACTION_PROHIBITED``."""

    ckr = CKR.ACTION_PROHIBITED


class DataInvalid(PKCS11Error):
    """``CKR_DATA_INVALID``."""

    ckr = CKR.DATA_INVALID


class DataLenRange(PKCS11Error, ArgumentError):
    """``CKR_DATA_LEN_RANGE``."""

    ckr = CKR.DATA_LEN_RANGE


class DeviceError(PKCS11Error):
    """``CKR_DEVICE_ERROR``."""

    ckr = CKR.DEVICE_ERROR


class DeviceMemory(PKCS11Error):
    """``CKR_DEVICE_MEMORY``."""

    ckr = CKR.DEVICE_MEMORY


class DeviceRemoved(PKCS11Error, TransportError):
    """``CKR_DEVICE_REMOVED``."""

    ckr = CKR.DEVICE_REMOVED


class EncryptedDataInvalid(PKCS11Error):
    """``CKR_ENCRYPTED_DATA_INVALID``."""

    ckr = CKR.ENCRYPTED_DATA_INVALID


class EncryptedDataLenRange(PKCS11Error, ArgumentError):
    """``CKR_ENCRYPTED_DATA_LEN_RANGE``."""

    ckr = CKR.ENCRYPTED_DATA_LEN_RANGE


class AeadDecryptFailed(PKCS11Error):
    """``CKR_AEAD_DECRYPT_FAILED``."""

    ckr = CKR.AEAD_DECRYPT_FAILED


class FunctionCanceled(PKCS11Error):
    """``CKR_FUNCTION_CANCELED``."""

    ckr = CKR.FUNCTION_CANCELED


class FunctionNotParallel(PKCS11Error):
    """``CKR_FUNCTION_NOT_PARALLEL``."""

    ckr = CKR.FUNCTION_NOT_PARALLEL


class FunctionNotSupported(PKCS11Error):
    """``CKR_FUNCTION_NOT_SUPPORTED``."""

    ckr = CKR.FUNCTION_NOT_SUPPORTED


class KeyHandleInvalid(PKCS11Error, ArgumentError):
    """``CKR_KEY_HANDLE_INVALID``."""

    ckr = CKR.KEY_HANDLE_INVALID


class KeySizeRange(PKCS11Error, ArgumentError):
    """``CKR_KEY_SIZE_RANGE``."""

    ckr = CKR.KEY_SIZE_RANGE


class KeyTypeInconsistent(PKCS11Error, ArgumentError):
    """``CKR_KEY_TYPE_INCONSISTENT``."""

    ckr = CKR.KEY_TYPE_INCONSISTENT


class KeyNotNeeded(PKCS11Error):
    """``CKR_KEY_NOT_NEEDED``."""

    ckr = CKR.KEY_NOT_NEEDED


class KeyChanged(PKCS11Error):
    """``CKR_KEY_CHANGED``."""

    ckr = CKR.KEY_CHANGED


class KeyNeeded(PKCS11Error):
    """``CKR_KEY_NEEDED``."""

    ckr = CKR.KEY_NEEDED


class KeyIndigestible(PKCS11Error):
    """``CKR_KEY_INDIGESTIBLE``."""

    ckr = CKR.KEY_INDIGESTIBLE


class KeyFunctionNotPermitted(PKCS11Error, KeyPolicyError):
    """``CKR_KEY_FUNCTION_NOT_PERMITTED``."""

    ckr = CKR.KEY_FUNCTION_NOT_PERMITTED


class KeyNotWrappable(PKCS11Error, KeyPolicyError):
    """``CKR_KEY_NOT_WRAPPABLE``."""

    ckr = CKR.KEY_NOT_WRAPPABLE


class KeyUnextractable(PKCS11Error, KeyPolicyError):
    """``CKR_KEY_UNEXTRACTABLE``."""

    ckr = CKR.KEY_UNEXTRACTABLE


class MechanismInvalid(PKCS11Error, ArgumentError):
    """``CKR_MECHANISM_INVALID``."""

    ckr = CKR.MECHANISM_INVALID


class MechanismParamInvalid(PKCS11Error, ArgumentError):
    """``CKR_MECHANISM_PARAM_INVALID``."""

    ckr = CKR.MECHANISM_PARAM_INVALID


class ObjectHandleInvalid(PKCS11Error, ArgumentError):
    """``CKR_OBJECT_HANDLE_INVALID``."""

    ckr = CKR.OBJECT_HANDLE_INVALID


class OperationActive(PKCS11Error):
    """``CKR_OPERATION_ACTIVE``."""

    ckr = CKR.OPERATION_ACTIVE


class OperationNotInitialized(PKCS11Error):
    """``CKR_OPERATION_NOT_INITIALIZED``."""

    ckr = CKR.OPERATION_NOT_INITIALIZED


class PinIncorrect(PKCS11Error, AuthError):
    """``CKR_PIN_INCORRECT``."""

    ckr = CKR.PIN_INCORRECT


class PinInvalid(PKCS11Error, AuthError):
    """``CKR_PIN_INVALID``."""

    ckr = CKR.PIN_INVALID


class PinLenRange(PKCS11Error, AuthError):
    """``CKR_PIN_LEN_RANGE``."""

    ckr = CKR.PIN_LEN_RANGE


class PinExpired(PKCS11Error, AuthError):
    """``CKR_PIN_EXPIRED``."""

    ckr = CKR.PIN_EXPIRED


class PinLocked(PKCS11Error, AuthError):
    """``CKR_PIN_LOCKED``."""

    ckr = CKR.PIN_LOCKED


class SessionClosed(PKCS11Error):
    """``CKR_SESSION_CLOSED``."""

    ckr = CKR.SESSION_CLOSED


class SessionCount(PKCS11Error):
    """``CKR_SESSION_COUNT``."""

    ckr = CKR.SESSION_COUNT


class SessionHandleInvalid(PKCS11Error, ArgumentError):
    """``CKR_SESSION_HANDLE_INVALID``."""

    ckr = CKR.SESSION_HANDLE_INVALID


class SessionParallelNotSupported(PKCS11Error):
    """``CKR_SESSION_PARALLEL_NOT_SUPPORTED``."""

    ckr = CKR.SESSION_PARALLEL_NOT_SUPPORTED


class SessionReadOnly(PKCS11Error):
    """``CKR_SESSION_READ_ONLY``."""

    ckr = CKR.SESSION_READ_ONLY


class SessionExists(PKCS11Error):
    """``CKR_SESSION_EXISTS``."""

    ckr = CKR.SESSION_EXISTS


class SessionReadOnlyExists(PKCS11Error):
    """``CKR_SESSION_READ_ONLY_EXISTS``."""

    ckr = CKR.SESSION_READ_ONLY_EXISTS


class SessionReadWriteSoExists(PKCS11Error):
    """``CKR_SESSION_READ_WRITE_SO_EXISTS``."""

    ckr = CKR.SESSION_READ_WRITE_SO_EXISTS


class SignatureInvalid(PKCS11Error):
    """``CKR_SIGNATURE_INVALID``."""

    ckr = CKR.SIGNATURE_INVALID


class SignatureLenRange(PKCS11Error, ArgumentError):
    """``CKR_SIGNATURE_LEN_RANGE``."""

    ckr = CKR.SIGNATURE_LEN_RANGE


class TemplateIncomplete(PKCS11Error, KeyPolicyError):
    """``CKR_TEMPLATE_INCOMPLETE``."""

    ckr = CKR.TEMPLATE_INCOMPLETE


class TemplateInconsistent(PKCS11Error, KeyPolicyError):
    """``CKR_TEMPLATE_INCONSISTENT``."""

    ckr = CKR.TEMPLATE_INCONSISTENT


class TokenNotPresent(PKCS11Error):
    """``CKR_TOKEN_NOT_PRESENT``."""

    ckr = CKR.TOKEN_NOT_PRESENT


class TokenNotRecognized(PKCS11Error):
    """``CKR_TOKEN_NOT_RECOGNIZED``."""

    ckr = CKR.TOKEN_NOT_RECOGNIZED


class TokenWriteProtected(PKCS11Error):
    """``CKR_TOKEN_WRITE_PROTECTED``."""

    ckr = CKR.TOKEN_WRITE_PROTECTED


class UnwrappingKeyHandleInvalid(PKCS11Error, ArgumentError):
    """``CKR_UNWRAPPING_KEY_HANDLE_INVALID``."""

    ckr = CKR.UNWRAPPING_KEY_HANDLE_INVALID


class UnwrappingKeySizeRange(PKCS11Error, ArgumentError):
    """``CKR_UNWRAPPING_KEY_SIZE_RANGE``."""

    ckr = CKR.UNWRAPPING_KEY_SIZE_RANGE


class UnwrappingKeyTypeInconsistent(PKCS11Error, ArgumentError):
    """``CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT``."""

    ckr = CKR.UNWRAPPING_KEY_TYPE_INCONSISTENT


class UserAlreadyLoggedIn(PKCS11Error, AuthError):
    """``CKR_USER_ALREADY_LOGGED_IN``."""

    ckr = CKR.USER_ALREADY_LOGGED_IN


class UserNotLoggedIn(PKCS11Error, AuthError):
    """``CKR_USER_NOT_LOGGED_IN``."""

    ckr = CKR.USER_NOT_LOGGED_IN


class UserPinNotInitialized(PKCS11Error, AuthError):
    """``CKR_USER_PIN_NOT_INITIALIZED``."""

    ckr = CKR.USER_PIN_NOT_INITIALIZED


class UserTypeInvalid(PKCS11Error, AuthError):
    """``CKR_USER_TYPE_INVALID``."""

    ckr = CKR.USER_TYPE_INVALID


class UserAnotherAlreadyLoggedIn(PKCS11Error, AuthError):
    """``CKR_USER_ANOTHER_ALREADY_LOGGED_IN``."""

    ckr = CKR.USER_ANOTHER_ALREADY_LOGGED_IN


class UserTooManyTypes(PKCS11Error, AuthError):
    """``CKR_USER_TOO_MANY_TYPES``."""

    ckr = CKR.USER_TOO_MANY_TYPES


class WrappedKeyInvalid(PKCS11Error):
    """``CKR_WRAPPED_KEY_INVALID``."""

    ckr = CKR.WRAPPED_KEY_INVALID


class WrappedKeyLenRange(PKCS11Error, ArgumentError):
    """``CKR_WRAPPED_KEY_LEN_RANGE``."""

    ckr = CKR.WRAPPED_KEY_LEN_RANGE


class WrappingKeyHandleInvalid(PKCS11Error, ArgumentError):
    """``CKR_WRAPPING_KEY_HANDLE_INVALID``."""

    ckr = CKR.WRAPPING_KEY_HANDLE_INVALID


class WrappingKeySizeRange(PKCS11Error, ArgumentError):
    """``CKR_WRAPPING_KEY_SIZE_RANGE``."""

    ckr = CKR.WRAPPING_KEY_SIZE_RANGE


class WrappingKeyTypeInconsistent(PKCS11Error, ArgumentError):
    """``CKR_WRAPPING_KEY_TYPE_INCONSISTENT``."""

    ckr = CKR.WRAPPING_KEY_TYPE_INCONSISTENT


class RandomSeedNotSupported(PKCS11Error):
    """``CKR_RANDOM_SEED_NOT_SUPPORTED``."""

    ckr = CKR.RANDOM_SEED_NOT_SUPPORTED


class RandomNoRng(PKCS11Error):
    """``CKR_RANDOM_NO_RNG``."""

    ckr = CKR.RANDOM_NO_RNG


class DomainParamsInvalid(PKCS11Error, ArgumentError):
    """``CKR_DOMAIN_PARAMS_INVALID``."""

    ckr = CKR.DOMAIN_PARAMS_INVALID


class CurveNotSupported(PKCS11Error, ArgumentError):
    """``CKR_CURVE_NOT_SUPPORTED``."""

    ckr = CKR.CURVE_NOT_SUPPORTED


class SavedStateInvalid(PKCS11Error):
    """``CKR_SAVED_STATE_INVALID``."""

    ckr = CKR.SAVED_STATE_INVALID


class InformationSensitive(PKCS11Error):
    """``CKR_INFORMATION_SENSITIVE``."""

    ckr = CKR.INFORMATION_SENSITIVE


class StateUnsaveable(PKCS11Error):
    """``CKR_STATE_UNSAVEABLE``."""

    ckr = CKR.STATE_UNSAVEABLE


class CryptokiNotInitialized(PKCS11Error):
    """``CKR_CRYPTOKI_NOT_INITIALIZED``."""

    ckr = CKR.CRYPTOKI_NOT_INITIALIZED


class CryptokiAlreadyInitialized(PKCS11Error):
    """``CKR_CRYPTOKI_ALREADY_INITIALIZED``."""

    ckr = CKR.CRYPTOKI_ALREADY_INITIALIZED


class MutexBad(PKCS11Error):
    """``CKR_MUTEX_BAD``."""

    ckr = CKR.MUTEX_BAD


class MutexNotLocked(PKCS11Error):
    """``CKR_MUTEX_NOT_LOCKED``."""

    ckr = CKR.MUTEX_NOT_LOCKED


class NewPinMode(PKCS11Error):
    """``CKR_NEW_PIN_MODE``."""

    ckr = CKR.NEW_PIN_MODE


class NextOtp(PKCS11Error):
    """``CKR_NEXT_OTP``."""

    ckr = CKR.NEXT_OTP


class ExceededMaxIterations(PKCS11Error):
    """``CKR_EXCEEDED_MAX_ITERATIONS``."""

    ckr = CKR.EXCEEDED_MAX_ITERATIONS


class FipsSelfTestFailed(PKCS11Error):
    """``CKR_FIPS_SELF_TEST_FAILED``."""

    ckr = CKR.FIPS_SELF_TEST_FAILED


class LibraryLoadFailed(PKCS11Error):
    """``CKR_LIBRARY_LOAD_FAILED``."""

    ckr = CKR.LIBRARY_LOAD_FAILED


class PinTooWeak(PKCS11Error, AuthError):
    """``CKR_PIN_TOO_WEAK``."""

    ckr = CKR.PIN_TOO_WEAK


class PublicKeyInvalid(PKCS11Error):
    """``CKR_PUBLIC_KEY_INVALID``."""

    ckr = CKR.PUBLIC_KEY_INVALID


class FunctionRejected(PKCS11Error):
    """``CKR_FUNCTION_REJECTED``."""

    ckr = CKR.FUNCTION_REJECTED


class TokenResourceExceeded(PKCS11Error):
    """``CKR_TOKEN_RESOURCE_EXCEEDED``."""

    ckr = CKR.TOKEN_RESOURCE_EXCEEDED


class OperationCancelFailed(PKCS11Error):
    """``CKR_OPERATION_CANCEL_FAILED``."""

    ckr = CKR.OPERATION_CANCEL_FAILED


class BufferTooSmall(PKCS11Error):
    """``CKR_BUFFER_TOO_SMALL``: the caller's output buffer is shorter than the result (PKCS#11 3.0 §5.2).

    Attributes:
        required: the exact output length in bytes; the operation stays active so the caller can retry.
    """

    ckr = CKR.BUFFER_TOO_SMALL

    def __init__(self, required: int) -> None:
        super().__init__(f"output needs {required} bytes")
        self.required = required


class StoreIntegrityError(DeviceError):
    """A masked store row failed authentication or the store's structure was altered; the store is refused."""


class NoQuorum(PKCS11Error, TransportError):
    """Strongroom's ``CKR_VENDOR_DEFINED | 0x101``: a write was not committed by a majority of HSMs in time (no
    majority reachable, or the leader changed). Retryable: the same request, with its request key, is safe to
    send again."""

    ckr = CKR_VENDOR_NO_QUORUM
    retryable = True


class NodeBehind(PKCS11Error, TransportError):
    """Strongroom's ``CKR_VENDOR_DEFINED | 0x102``: this HSM has not yet applied the client's latest write within
    the wait bound. Retryable, here or on another HSM."""

    ckr = CKR_VENDOR_NODE_BEHIND
    retryable = True


_BY_CKR: dict[int, type[PKCS11Error]] = {cls.ckr: cls for cls in PKCS11Error.__subclasses__()}


def error_for(ckr: int, message: str | None = None) -> StrongroomError:
    """Return an exception instance for a ``CKR_*`` value.

    Args:
        ckr: a PKCS#11 return value other than ``CKR_OK``.
        message: optional human-readable detail.

    Returns:
        An instance of the class registered for ``ckr``, or :class:`PKCS11Error` carrying the raw code for a
        value this table does not know (vendor-defined codes).
    """
    cls = _BY_CKR.get(ckr)
    if cls is BufferTooSmall:
        return BufferTooSmall(0)
    if cls is not None:
        return cls(message)
    err = PKCS11Error(message or f"CKR 0x{ckr:x}")
    err.ckr = ckr
    return err


class Outcome(NamedTuple):
    """What an error becomes at Strongroom's outer edges.

    Attributes:
        http_status: the HTTP status the control plane answers with (cloudhsmv2 over AWS JSON 1.1).
        exit_code: the exit status of the ``strongroom`` and ``strongroom-cli`` commands.
    """

    http_status: int
    exit_code: int


DEFAULT_OUTCOME = Outcome(http_status=400, exit_code=1)
"""The outcome of a ``CKR_*`` value with no row of its own: a request that cannot be served as sent (HTTP 400,
as AWS answers a client error) and a failed command (exit 1)."""

OUTCOMES: Mapping[int, Outcome] = MappingProxyType({
    **{int(ckr): DEFAULT_OUTCOME for ckr in CKR if ckr not in (CKR.OK, CKR.VENDOR_DEFINED)},
    CKR_VENDOR_NO_QUORUM: DEFAULT_OUTCOME,
    CKR_VENDOR_NODE_BEHIND: DEFAULT_OUTCOME,
    # The rows that differ from the default:
    CKR.GENERAL_ERROR: Outcome(http_status=500, exit_code=1),  # the server's own failure (InternalFailure)
    CKR.USER_NOT_LOGGED_IN: Outcome(http_status=403, exit_code=1),  # no credentials (MissingAuthenticationToken)
})
"""``CKR_*`` value → :class:`Outcome` (HTTP status of the control plane, exit code of the command line), one row
per ``CKR`` member and per vendor-defined value of :mod:`strongroom.vendor`. Read it through :func:`outcome`."""


def outcome(exc: BaseException) -> Outcome:
    """The :class:`Outcome` of an error: its ``ckr``'s row of :data:`OUTCOMES` (:data:`DEFAULT_OUTCOME` for a
    vendor-defined value with no row); an exception that is not a :class:`StrongroomError` is a defect and has
    ``CKR_GENERAL_ERROR``'s row."""
    if isinstance(exc, StrongroomError):
        return OUTCOMES.get(int(exc.ckr), DEFAULT_OUTCOME)
    return OUTCOMES[CKR.GENERAL_ERROR]


def http_status(exc: BaseException) -> int:
    """The HTTP status the control plane answers ``exc`` with (from :data:`OUTCOMES`)."""
    return outcome(exc).http_status


def exit_code(exc: BaseException) -> int:
    """The exit status a command that failed with ``exc`` ends with (from :data:`OUTCOMES`)."""
    return outcome(exc).exit_code
