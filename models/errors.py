"""Exceptions raised by the models package; each message names the file, field or limit at fault."""
from __future__ import annotations


class ModelError(Exception):
    """Base class: anything wrong with a checkpoint, an artifact or the runtime set-up."""


class CheckpointError(ModelError):
    """A source checkpoint cannot be used (missing, no masked-LM head, vocabulary mismatch, bad weight table)."""


class ArtifactError(ModelError):
    """An exported model artifact directory is missing, incomplete or corrupt."""


class ProviderError(ModelError):
    """The requested execution provider (device) cannot be used on this machine."""


class DownloadError(ModelError):
    """The default model could not be downloaded or did not match its checksum."""
