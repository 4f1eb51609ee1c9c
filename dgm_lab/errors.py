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


class Interrupted(Exception):
    """The run stopped on a signal (SIGTERM, SIGINT); ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signal_name: str, exit_code: int, message: str):
        super().__init__(message)
        self.signal_name, self.exit_code = signal_name, exit_code


def require(condition: bool, message: str) -> None:
    """Raise a ConfigError with ``message`` (one sentence that says what to do) unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
