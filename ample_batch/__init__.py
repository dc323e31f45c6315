"""ample-batch: validate the emails in large lead lists through the Amplemarket API."""

from .errors import (
    AmpleBatchError,
    ApiError,
    InputError,
    InsufficientCredits,
    Unauthorized,
)
from .limits import Limit, parse_duration, parse_limit

__all__ = [
    "AmpleBatchError",
    "ApiError",
    "InputError",
    "InsufficientCredits",
    "Limit",
    "Unauthorized",
    "parse_duration",
    "parse_limit",
]
