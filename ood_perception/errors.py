"""Typed errors that tell the user what to fix."""


class OodPerceptionError(Exception):
    """Base class: anything the user controls (files, parameters, inputs)."""


class ConfigurationError(OodPerceptionError):
    """A parameter, model file or backend choice that cannot work; stops start-up."""


class CheckpointError(OodPerceptionError):
    """A checkpoint whose keys or shapes do not match the model it should load into."""


class ImageDecodeError(OodPerceptionError):
    """One malformed frame; `reason` is a short stable key used for drop counters."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
