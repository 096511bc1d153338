"""Many files and many machines: the local resumable batch, and Ray (cluster, batch, serve).
The only place that imports ray."""

from __future__ import annotations


def require_ray() -> None:
    """Raise a ConfigError that says how to install Ray, unless it is installed."""
    from asr.errors import ConfigError

    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("Ray is not installed; install the extra: pip install '.[ray]' "
                          "(or pip install 'asr-service[ray]')") from None
