"""Errors of the lake's storage: unusable settings, and refused access, said plainly."""


class LakeConfigurationError(Exception):
    """The lake's URL, settings or credentials are unusable. The message names no secret."""


class LakeAccessError(LakeConfigurationError):
    """The bucket or container is missing, or the store refused these credentials or this
    operation: not worth retrying, and the message says which and what to change."""
