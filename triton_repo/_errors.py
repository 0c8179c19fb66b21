"""The errors of :mod:`triton_repo`.

All derive from :class:`TritonRepoError`, itself a :class:`pixeldcn_core.PixelDCNError`. Errors
caused by bad input also derive from :class:`ValueError`; a server that cannot be reached derives
from :class:`ConnectionError`, a server that does not answer in time from :class:`TimeoutError`.
Messages name the field, the value received and the value expected; errors that come from the
server keep its message and status.
"""

from __future__ import annotations

from pixeldcn_core import PixelDCNError

__all__ = [
    "ConfigError",
    "InferenceInputError",
    "ModelNameError",
    "ModelNotFoundError",
    "OptionsKeywordError",
    "RepositoryError",
    "ServerError",
    "ServerStartError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "TritonNotInstalledError",
    "TritonRepoError",
]

TRITON_EXTRA_HINT = "pip install 'pixeldcn[triton]'"


class TritonRepoError(PixelDCNError):
    """Root of every error raised by :mod:`triton_repo`."""


class ModelNameError(TritonRepoError, ValueError):
    """A model name that Triton or the file system would not accept."""


class ConfigError(TritonRepoError, ValueError):
    """A repository or config argument out of range (batch size, instance kind, warm-up...)."""


class OptionsKeywordError(ConfigError, TypeError):
    """A setting passed as a keyword where an options object is expected now: a serving option
    to ``write_repository`` (the pre-0.2 call; the message shows ``options=ServingOptions(...)``)
    or a server setting to ``LocalTritonServer`` (the pre-0.3 call; ``ServerConfig(...)``)."""


class RepositoryError(TritonRepoError, ValueError):
    """The ONNX model or the repository on disk cannot be used (bad model, external data
    outside the model's folder, existing version...)."""


class InferenceInputError(TritonRepoError, ValueError):
    """A request that the model would refuse, caught before it is sent (dtype, rank, channels,
    batch size)."""


class TritonNotInstalledError(TritonRepoError, ImportError):
    """The optional Triton dependencies (tritonclient, nvidia-pytriton) are missing."""


class ServerStartError(TritonRepoError, RuntimeError):
    """The local tritonserver did not become ready; the message holds the reason and the tail
    of the server log."""


class ServerUnavailableError(TritonRepoError, ConnectionError):
    """Nothing answers at the server's address (connection refused, unknown host)."""


class ServerTimeoutError(TritonRepoError, TimeoutError):
    """The server accepted the connection but did not answer in time."""


class ServerError(TritonRepoError):
    """The server answered with an error.

    Attributes:
        status: the server's status (HTTP status code as a string, or the gRPC status name).
        server_message: the server's own message, unchanged.
    """

    def __init__(self, message: str, *, status: str | None = None, server_message: str = ""):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class ModelNotFoundError(ServerError):
    """The server does not know the model, or the model is not ready."""
