"""Shared by the families with optional fast kernels (Mamba, RWKV)."""


class BackendUnavailableError(ImportError):
    """A requested kernel backend cannot run here; the message says why and how to install it."""
