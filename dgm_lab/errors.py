"""Errors a user can cause. Entry points print their message as one sentence and exit non-zero."""


class UserError(Exception):
    """Base class: bad config value, missing file, wrong shape. Printed without a traceback."""


class ConfigError(UserError):
    """A config value is out of range or inconsistent."""


class DataError(UserError):
    """A dataset or weights file is missing or malformed."""


class CheckpointError(UserError):
    """A checkpoint or run folder cannot be read."""


class DivergedError(Exception):
    """The training loss became NaN or infinite."""


def require(condition: bool, message: str) -> None:
    """Raise a ConfigError with ``message`` (one sentence that says what to do) unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
