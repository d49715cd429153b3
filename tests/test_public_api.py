"""The public surfaces, pinned: a name leaves or joins ``__all__`` only by editing this list (the habit of httpx's
``tests/test_exported_members.py``)."""

from __future__ import annotations

import importlib
import inspect

import pytest

EXPECTED = {
    "strongroom": ["__version__"],
    "strongroom.client": [
        "Async", "ClientConfig", "Cluster", "ConnectionLost", "Key", "Session", "Sync", "connect", "connect_async",
        "mechanism", "template",
    ],
    "strongroom.errors": [
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
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_all_lists_exactly_the_expected_names(name: str) -> None:
    module = importlib.import_module(name)
    assert len(module.__all__) == len(set(module.__all__))
    assert sorted(module.__all__) == sorted(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_public_class_is_in_all(name: str) -> None:
    """A class of the package (defined in the module or one of its submodules) that the module's namespace
    holds under a public name is exported; anything else is imported under a private name."""
    module = importlib.import_module(name)
    public = {n for n, value in vars(module).items()
              if not n.startswith("_") and inspect.isclass(value)
              and (value.__module__ == name or value.__module__.startswith(name + "."))}
    assert public - set(module.__all__) == set()


def test_the_sdk_does_not_export_its_runner() -> None:
    import strongroom.client
    from strongroom.client.faces import _Runner

    assert not hasattr(strongroom.client, "_Runner")
    assert _Runner.__module__ == "strongroom.client.faces"
