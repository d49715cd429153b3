"""The exception tree: one root, categories to catch by, the CKR → HTTP status → exit code table."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import strongroom
from strongroom import errors, vendor
from strongroom.control import api_errors, sigv4
from strongroom.control.api_client import ControlError
from strongroom.control.process import AlreadyRunning
from strongroom.control.provider import ProviderError
from strongroom.pkcs11.wire import WireError
from strongroom.vocab import CKR


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(strongroom.__path__, "strongroom."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        found += [value for value in vars(module).values()
                  if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name]
    return found


def test_every_exception_class_derives_from_strongroom_error() -> None:
    classes = _exception_classes()
    assert len(classes) > 100
    strays = {f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not issubclass(cls, errors.StrongroomError)}
    assert strays == set()


@pytest.mark.parametrize(("cls", "category"), [
    (errors.PinIncorrect, errors.AuthError), (errors.PinLocked, errors.AuthError),
    (errors.UserNotLoggedIn, errors.AuthError), (errors.UserTypeInvalid, errors.AuthError),
    (sigv4.SignatureError, errors.AuthError), (api_errors.AccessDenied, errors.AuthError),
    (errors.KeyFunctionNotPermitted, errors.KeyPolicyError), (errors.KeyUnextractable, errors.KeyPolicyError),
    (errors.AttributeSensitive, errors.KeyPolicyError), (errors.TemplateInconsistent, errors.KeyPolicyError),
    (errors.DeviceRemoved, errors.TransportError), (errors.NoQuorum, errors.TransportError),
    (errors.NodeBehind, errors.TransportError), (WireError, errors.TransportError),
    (ProviderError, errors.TransportError),
    (errors.ArgumentsBad, errors.ArgumentError), (errors.MechanismInvalid, errors.ArgumentError),
    (errors.ObjectHandleInvalid, errors.ArgumentError), (api_errors.InvalidRequest, errors.ArgumentError),
])
def test_categories(cls: type[errors.StrongroomError], category: type[errors.StrongroomError]) -> None:
    assert issubclass(cls, category)


def test_a_category_does_not_change_a_class_or_its_code() -> None:
    assert errors.PinIncorrect.__mro__[1] is errors.PKCS11Error
    assert errors.error_for(int(CKR.PIN_INCORRECT)).__class__ is errors.PinIncorrect
    assert errors.error_for(vendor.CKR_VENDOR_NO_QUORUM).__class__ is errors.NoQuorum
    assert errors.NoQuorum().ckr_name == "CKR_VENDOR_NO_QUORUM"
    assert (errors.NoQuorum.ckr, errors.NodeBehind.ckr) == (0x80000101, 0x80000102)
    assert errors.NoQuorum.retryable and errors.NodeBehind.retryable and not errors.PinIncorrect.retryable
    unknown = errors.error_for(0x80000999)
    assert type(unknown) is errors.PKCS11Error and unknown.ckr_name == "CKR_VENDOR_DEFINED|0x999"


def test_wire_error_is_still_a_value_error() -> None:
    with pytest.raises(ValueError, match="early"):
        raise WireError("the body ends early")
    assert WireError("x").ckr == CKR.ARGUMENTS_BAD


def test_edge_errors_keep_their_messages() -> None:
    error = ControlError("CloudHsmInvalidRequestException", "no such thing")
    assert (str(error), error.code, error.message) == ("CloudHsmInvalidRequestException: no such thing",
                                                         "CloudHsmInvalidRequestException", "no such thing")
    assert error.ckr == CKR.ARGUMENTS_BAD
    assert ControlError("HTTP 502", "").ckr == CKR.GENERAL_ERROR
    assert str(AlreadyRunning("a control plane already runs on /x")) == "a control plane already runs on /x"
    signature = sigv4.SignatureError("InvalidSignatureException", "wrong")
    assert (str(signature), signature.code, signature.message) == ("wrong", "InvalidSignatureException", "wrong")


@pytest.mark.parametrize(("error", "status"), [
    (api_errors.ApiError("x"), 400), (api_errors.InvalidRequest("x"), 400), (api_errors.ResourceNotFound("x"), 400),
    (api_errors.AccessDenied("x"), 400), (api_errors.TagError("x"), 400),
    (api_errors.ResourceLimitExceeded("x"), 400), (api_errors.InternalFailure("x"), 500),
    (api_errors.UnknownOperation("x"), 400), (api_errors.SerializationError("x"), 400),
    (sigv4.SignatureError("MissingAuthenticationTokenException", "x"), 403),
    (sigv4.SignatureError("IncompleteSignatureException", "x"), 400),
    (sigv4.SignatureError("UnrecognizedClientException", "x"), 400),
    (sigv4.SignatureError("InvalidSignatureException", "x"), 400),
])
def test_http_status_of_the_control_plane_errors(error: errors.StrongroomError, status: int) -> None:
    assert errors.http_status(error) == status
    if isinstance(error, api_errors.ApiError):
        assert error.status == status


def test_the_table_has_a_row_for_every_code() -> None:
    assert set(errors.OUTCOMES) == {int(c) for c in CKR if c not in (CKR.OK, CKR.VENDOR_DEFINED)} | set(
        vendor.CKR_VENDOR_NAMES)
    assert {o.exit_code for o in errors.OUTCOMES.values()} == {1}
    assert errors.exit_code(errors.PinIncorrect()) == errors.exit_code(OSError()) == 1
    assert errors.outcome(errors.error_for(0x80000999)) == errors.DEFAULT_OUTCOME


def test_roles_and_their_user_types() -> None:
    from strongroom.node.users import Role

    assert Role is vendor.Role
    assert {r.value: r.user_type for r in vendor.Role} == {
        "unactivated-admin": 0, "admin": 0, "crypto-user": 1, "appliance": vendor.CKU_APPLIANCE}
    assert vendor.LOGIN_ROLES == {"crypto-user": 1, "admin": 0, "appliance": vendor.CKU_APPLIANCE}
