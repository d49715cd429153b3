"""The cloudhsmv2 API's errors: a name, an HTTP status and a message, answered as ``{"__type", "Message"}``."""

from __future__ import annotations


class ApiError(Exception):
    """An error the API answers with; ``code`` is the service's exception name (the JSON ``__type``)."""

    code = "CloudHsmServiceException"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"__type": self.code, "Message": self.message}


class InvalidRequest(ApiError):
    """A request that breaks a parameter rule or the current state's rules."""

    code = "CloudHsmInvalidRequestException"


class ResourceNotFound(ApiError):
    code = "CloudHsmResourceNotFoundException"


class AccessDenied(ApiError):
    code = "CloudHsmAccessDeniedException"


class TagError(ApiError):
    code = "CloudHsmTagException"


class ResourceLimitExceeded(ApiError):
    code = "CloudHsmResourceLimitExceededException"


class InternalFailure(ApiError):
    code = "CloudHsmInternalFailureException"
    status = 500


class UnknownOperation(ApiError):
    """An ``X-Amz-Target`` the service does not have (AWS answers ``UnknownOperationException``)."""

    code = "UnknownOperationException"


class SerializationError(ApiError):
    """A body that is not a JSON object (AWS answers ``SerializationException``)."""

    code = "SerializationException"
