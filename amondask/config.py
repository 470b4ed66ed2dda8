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


def _unknown_keys(given: Any, known: Any, prefix: str) -> list[str]:
    """Dotted names in ``given`` that the defaults ``known`` do not have (free-form values,
    whose default is not a mapping, are not looked into)."""
    if not isinstance(given, dict) or not isinstance(known, dict):
        return []
    unknown = []
    for key, value in given.items():
        if key not in known:
            unknown.append(f"{prefix}{key}")
        else:
            unknown.extend(_unknown_keys(value, known[key], f"{prefix}{key}."))
    return unknown


def _flatten(data: dict[str, Any], known: Any, prefix: str) -> dict[str, Any]:
    """Dotted keys of the leaves of ``data``. With ``known`` (the defaults at this level), a
    value is a leaf unless its default is a mapping (free-form values stay whole); without,
    every mapping is descended into."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        default = known.get(key) if isinstance(known, dict) else None
        if isinstance(value, dict) and (known is None or isinstance(default, dict)):
            flat.update(_flatten(value, default, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML configuration file as dotted keys (``amondask.geometry.seed``),
    checked against the known options; see :func:`load_file`."""
    path = Path(path)
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of options")
    known = _load_defaults()["amondask"]
    if "amondask" not in data:
        # a bare file of amondask options, unless a key is another dask namespace (jobqueue:)
        _import_config_owners()
        dask_namespaces = {k for k in data if k not in known and k in dask.config.config}
        data = {"amondask": {k: v for k, v in data.items() if k not in dask_namespaces}} | {
            k: data[k] for k in dask_namespaces
        }
    if not isinstance(data["amondask"], dict):
        raise ConfigError(f"'amondask' in {path} must hold a mapping of options")
    unknown = _unknown_keys(data["amondask"], known, "amondask.")
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))} in {path}; every option with its "
            "default is listed in examples/amondask.yaml"
        )
    others = {key: value for key, value in data.items() if key != "amondask"}
    # other dask settings (distributed: ...) pass through as they are
    return {**_flatten(data["amondask"], known, "amondask."), **_flatten(others, None, "")}


def load_file(path: str | Path) -> Any:
    """Apply a YAML configuration file (the layout of ``examples/amondask.yaml``: options under
    ``amondask:``, optionally other dask settings such as ``distributed:`` beside it) on top of
    the current settings, for this process and the LocalCluster workers it starts later (an
    external cluster's workers need the file too). A file without a top-level ``amondask`` key
    is read as amondask options, except keys that name another dask namespace (``jobqueue:``,
    ``distributed:``), which pass through; unknown options raise :class:`ConfigError`.

    Returns the ``dask.config.set`` object: use it as a context manager (``with
    config.load_file(f):``) to apply the file only for a block.
    """
    settings = read_file(path)
    # dask.config.set's undo deletes a whole namespace that did not exist when it was set: load
    # the packages that register distributed.* / jobqueue.* defaults first, so it never is.
    _import_config_owners()
    return dask.config.set(settings)


def _import_config_owners() -> None:
    """Import the packages that add their defaults to dask.config (when installed)."""
    import importlib

    for module in ("distributed", "dask_jobqueue"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


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
