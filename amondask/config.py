"""Configuration through :mod:`dask.config`.

Defaults live in ``amondask/amondask.yaml`` (shipped in the package) under the ``amondask`` key.
They can be overridden like any dask setting (a YAML file in ``~/.config/dask/``, ``DASK_CONFIG``,
``dask.config.set``) and by environment variables ``AMONDASK_<KEY>``: the name after the prefix
is lower-cased, ``__`` separates nesting levels and ``_`` becomes ``-``; the value is parsed as
YAML. So ``AMONDASK_MAX_HEAVY_ATOMS=5`` sets ``amondask.max-heavy-atoms`` to 5 and
``AMONDASK_GEOMETRY__SEED=7`` sets ``amondask.geometry.seed`` to 7.

Functions take ``None`` for "use the configured value" and resolve it with :func:`get`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.config
import yaml

from amondask.errors import ConfigError

_DEFAULTS_FILE = Path(__file__).with_name("amondask.yaml")
ENV_PREFIX = "AMONDASK_"


def _load_defaults() -> dict[str, Any]:
    with open(_DEFAULTS_FILE) as handle:
        return yaml.safe_load(handle)


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``amondask.*`` settings given by ``AMONDASK_*`` environment variables, as a flat dict."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        key = "amondask." + ".".join(part.replace("_", "-") for part in parts)
        try:
            settings[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"environment variable {name}={raw!r} is not a valid YAML value ({exc}); "
                "quote it or unset it"
            ) from exc
    return settings


def refresh() -> None:
    """(Re)load the packaged defaults into dask.config and apply ``AMONDASK_*`` variables."""
    dask.config.update_defaults(_load_defaults())
    overrides = env_overrides()
    if overrides:
        dask.config.set(overrides)


def get(key: str, override: Any = None) -> Any:
    """The value of ``amondask.<key>``, unless ``override`` is not None.

    >>> get("max-heavy-atoms")
    7
    """
    if override is not None:
        return override
    full_key = key if key.startswith("amondask.") else f"amondask.{key}"
    try:
        return dask.config.get(full_key)
    except KeyError as exc:
        raise ConfigError(
            f"no configuration value {full_key!r}; known keys are under 'amondask' in "
            f"{_DEFAULTS_FILE}"
        ) from exc


refresh()
