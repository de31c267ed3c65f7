"""The API's errors, each answered as JSON by project.api.views."""

from crm.exceptions import RallyError


class ApiError(RallyError):
    """An error the client can fix, answered with `status` and a message."""

    status = 400

    def __init__(self, message, errors=()):
        super().__init__(message)
        self.message = message
        self.errors = [{"field": name, "message": text} for name, text in errors]


class ApiInputError(ApiError):
    """The request's content is wrong; nothing was written."""

    status = 422


class ApiForbidden(ApiError):
    status = 403


class ApiNotFound(ApiError):
    status = 404


class ApiRateLimited(ApiError):
    status = 429

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after
