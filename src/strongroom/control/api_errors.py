"""The cloudhsmv2 API's errors: a name, an HTTP status and a message, answered as ``{"__type", "Message"}``.

Each class is a :class:`~strongroom.errors.StrongroomError` with a ``CKR_*`` code; the HTTP status is that code's
row of :data:`strongroom.errors.OUTCOMES` (400, or 500 for ``CKR_GENERAL_ERROR``). The names are those of the
service's model (botocore ``cloudhsmv2`` 2017-04-28).
"""

from __future__ import annotations

from ..errors import ArgumentError, AuthError, StrongroomError, http_status
from ..vocab import CKR


class ApiError(StrongroomError):
    """An error the API answers with; ``code`` is the service's exception name (the JSON ``__type``).

    Args:
        message: the answer's ``Message``.
    """

    code = "CloudHsmServiceException"
    ckr = CKR.FUNCTION_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status of the answer (:func:`strongroom.errors.http_status`)."""
        return http_status(self)

    def body(self) -> dict[str, str]:
        """The answer's JSON body: ``{"__type": code, "Message": message}``."""
        return {"__type": self.code, "Message": self.message}


class InvalidRequest(ApiError, ArgumentError):
    """``CKR_ARGUMENTS_BAD``: a request that breaks a parameter rule or the current state's rules."""

    code = "CloudHsmInvalidRequestException"
    ckr = CKR.ARGUMENTS_BAD


class ResourceNotFound(ApiError, ArgumentError):
    """``CKR_ARGUMENTS_BAD``: the request names a cluster, HSM or backup that does not exist."""

    code = "CloudHsmResourceNotFoundException"
    ckr = CKR.ARGUMENTS_BAD


class AccessDenied(ApiError, AuthError):
    """``CKR_ACTION_PROHIBITED``: the caller may not run this operation."""

    code = "CloudHsmAccessDeniedException"
    ckr = CKR.ACTION_PROHIBITED


class TagError(ApiError, ArgumentError):
    """``CKR_ATTRIBUTE_VALUE_INVALID``: a tag key or value breaks the service's tag rules."""

    code = "CloudHsmTagException"
    ckr = CKR.ATTRIBUTE_VALUE_INVALID


class ResourceLimitExceeded(ApiError):
    """``CKR_TOKEN_RESOURCE_EXCEEDED``: the request would take a resource over its limit (tags per resource)."""

    code = "CloudHsmResourceLimitExceededException"
    ckr = CKR.TOKEN_RESOURCE_EXCEEDED


class InternalFailure(ApiError):
    """``CKR_GENERAL_ERROR`` (HTTP 500): the control plane failed; the same request may succeed later."""

    code = "CloudHsmInternalFailureException"
    ckr = CKR.GENERAL_ERROR
    retryable = True


class UnknownOperation(ApiError):
    """``CKR_FUNCTION_NOT_SUPPORTED``: an ``X-Amz-Target`` the service does not have (AWS answers
    ``UnknownOperationException``)."""

    code = "UnknownOperationException"
    ckr = CKR.FUNCTION_NOT_SUPPORTED


class SerializationError(ApiError, ArgumentError):
    """``CKR_ARGUMENTS_BAD``: a body that is not a JSON object (AWS answers ``SerializationException``)."""

    code = "SerializationException"
    ckr = CKR.ARGUMENTS_BAD


class RequestTimeout(ApiError):
    """``CKR_FUNCTION_FAILED``: the request's body did not arrive within the control plane's body timeout."""

    code = "RequestTimeoutException"
    ckr = CKR.FUNCTION_FAILED
    retryable = True


BY_CODE: dict[str, type[ApiError]] = {cls.code: cls for cls in (
    ApiError, InvalidRequest, ResourceNotFound, AccessDenied, TagError, ResourceLimitExceeded, InternalFailure,
    UnknownOperation, SerializationError, RequestTimeout)}
"""The error classes by their ``__type`` name, for a client reading an answer."""
