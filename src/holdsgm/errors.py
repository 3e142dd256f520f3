"""Exception types. Every error a user can cause is one of these (all subclass ValueError), with a
message that names the file, key or value and says what was expected. The CLI prints it as one line
(a traceback only with --debug) and exits non-zero."""


class HoldsgmError(ValueError):
    """Base class of holdsgm's user-facing errors."""


class ConfigError(HoldsgmError):
    """A config key, type or value is wrong."""


class DataError(HoldsgmError):
    """A dataset file or folder is missing, empty, corrupt or of the wrong shape."""


class CheckpointError(HoldsgmError):
    """A checkpoint is missing, truncated, corrupt, unsafe or of another architecture/SDE."""


class NumericsError(HoldsgmError):
    """NaN or inf appeared in a loss, a gradient or a sample."""
