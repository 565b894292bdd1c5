"""Use cases over the settings: check a value against the ``Settings`` record, read and change one
setting, save a whole form, and choose the default model.

Qt-free and light to import (the model catalog is imported only to choose a default model):
``bastion settings``, ``bastion models default``, the CLI's option checks and the window's core
tasks call the same functions. Every change is written atomically (``Settings.save``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.desktop.errors import BastionError
from bastion.desktop.settings import Settings

if TYPE_CHECKING:
    from bastion.models.catalog import ModelEntry

# Words that set an optional setting back to "not set" (default_model: the embedded model;
# n_threads: all cores).
UNSET_WORDS = frozenset({"none", "auto", "default"})
TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


class SettingError(BastionError):
    """A setting that does not exist, or a value it cannot take."""


def setting_keys() -> list[str]:
    """Every setting's name, in the order of the ``Settings`` record."""
    return [f.name for f in fields(Settings)]


def setting_field(key: str) -> Field[Any]:
    """The ``Settings`` field called ``key``; an unknown key is refused with the valid ones."""
    for f in fields(Settings):
        if f.name == key:
            return f
    raise SettingError(f"There is no setting {key!r}. The settings are: "
                       f"{', '.join(setting_keys())}.")


def setting_kind(key: str) -> tuple[type, bool]:
    """``(int | float | str, optional)`` for setting ``key``."""
    setting_field(key)
    hint = typing.get_type_hints(Settings)[key]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [a for a in args if a is not type(None)]
    return kinds[0], len(kinds) < len(args)


def setting_range(key: str) -> tuple[float, float] | None:
    """The inclusive range a numeric setting must lie in (None: any value of its type)."""
    bounds = setting_field(key).metadata.get("range")
    return None if bounds is None else (bounds[0], bounds[1])


def describe(key: str) -> str:
    """What setting ``key`` takes, e.g. "a whole number from 512 to 131072"."""
    kind, optional = setting_kind(key)
    bounds = setting_range(key)
    noun = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(
        kind, kind.__name__)
    if bounds is not None:
        noun += f" from {bounds[0]:g} to {bounds[1]:g}"
    if optional:
        noun += " or none"
    return noun


def parse_setting(key: str, text: str) -> Any:
    """``text`` (as typed on a command line) as a value of setting ``key``, checked.

    Raises:
        SettingError: the key is unknown, or the text is not a value it can take; the message
            says what it takes.
    """
    kind, optional = setting_kind(key)
    if optional and text.strip().lower() in UNSET_WORDS:
        return None
    if text == "-" and is_secret(key):
        # A token typed on the command line would stay in the shell's history and show in `ps`.
        import sys

        if sys.stdin.isatty():
            import getpass

            text = getpass.getpass(f"{key} (not shown): ").strip()
        else:
            text = sys.stdin.readline().strip()
        if not text:
            raise SettingError(f"No {key} came on standard input: pipe it in, e.g. "
                               f"`bastion settings set {key} - < token.txt`.")
    if kind is str:
        return check_setting(key, text)
    if kind is bool:
        word = text.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise SettingError(f"{key} takes {describe(key)}; {text!r} is not one.")
        return word in TRUE_WORDS
    try:
        value = kind(text.strip())
    except ValueError:
        raise SettingError(f"{key} takes {describe(key)}; {text!r} is not one.") from None
    return check_setting(key, value)


def check_setting(key: str, value: Any) -> Any:
    """``value`` if setting ``key`` can take it (an int is accepted for a float).

    Raises:
        SettingError: the key is unknown, or the value has the wrong type or is out of range.
    """
    kind, optional = setting_kind(key)
    if value is None:
        if optional:
            return None
        raise SettingError(f"{key} cannot be empty: it takes {describe(key)}.")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind or (isinstance(value, float) and not math.isfinite(value)):
        raise SettingError(f"{key} takes {describe(key)}; {value!r} is not one.")
    checked: Any = value  # of the field's type now (mypy cannot narrow by `kind`)
    bounds = setting_range(key)
    if bounds is not None and not bounds[0] <= checked <= bounds[1]:
        raise SettingError(f"{key} must be from {bounds[0]:g} to {bounds[1]:g}; "
                           f"{checked:g} is out of range.")
    if kind is str and not checked.strip() and key != "system_prompt":
        raise SettingError(f"{key} cannot be empty.")
    if key == "remote_url":
        from bastion.models.remote_http import RemoteConfigError, RemoteEndpoint

        try:
            RemoteEndpoint.parse(checked)
        except RemoteConfigError as error:
            raise SettingError(str(error)) from None
    return checked


def is_secret(key: str) -> bool:
    """Whether setting ``key`` is a secret: kept in its own 0600 file and never shown."""
    return bool(setting_field(key).metadata.get("secret"))


HIDDEN = "set (hidden)"


# -- the use cases -------------------------------------------------------------------------------


def read_setting(settings: Settings, key: str) -> Any:
    """The value of setting ``key`` (an unknown key is refused with the valid ones); a secret
    that is set reads as ``HIDDEN``."""
    value = getattr(settings, setting_field(key).name)
    return HIDDEN if value is not None and is_secret(key) else value


def change_setting(settings: Settings, path: Path, key: str, value: Any) -> Settings:
    """Save ``settings`` with ``key`` set to ``value`` (checked) to ``path``; the new settings.

    ``default_model`` goes through ``choose_default_model`` (the model must exist) instead.

    Raises:
        SettingError: unknown key, or a value the setting cannot take.
    """
    if key == "default_model":
        raise SettingError("Choose the default model with `bastion models default NAME` (or on "
                           "the Models page): the model is checked before it is saved.")
    changed = dataclasses.replace(settings, **{key: check_setting(key, value)})
    changed.save(path)
    return changed


def save_settings(settings: Settings, path: Path, wanted: Settings) -> Settings:
    """Save a whole form of settings, every value checked; the default model stays as it is
    (chosen with ``choose_default_model``, never by a form)."""
    for f in fields(Settings):
        if f.name != "default_model":
            check_setting(f.name, getattr(wanted, f.name))
    saved = dataclasses.replace(wanted, default_model=settings.default_model)
    saved.save(path)
    return saved


def choose_default_model(settings: Settings, path: Path, models_dir: Path,
                         spec: str | None) -> Settings:
    """Make ``spec`` the model Bastion starts with and save it; the new settings.

    ``spec`` is a catalog id, file name, the path of a .gguf file, ``remote:NAME`` (a model on
    the remote server, which must be configured), or None / "default" for the embedded model.
    A model in the models folder is stored by its id, another file by its path.

    Raises:
        ModelNotFound: nothing called ``spec``; the message lists the models there are.
        SettingError: the file is not a chat model Bastion can load, or a remote model is
            chosen with no remote server configured.
    """
    from bastion.models.remote_engine import REMOTE_PREFIX, remote_model_name

    stored: str | None = None
    remote = remote_model_name(spec.strip()) if spec is not None else None
    if remote is not None:
        if not settings.remote_url:
            raise SettingError(f"{spec} is a model on a remote server, and none is configured: "
                               "set its address first with `bastion settings set remote_url URL`.")
        stored = REMOTE_PREFIX + remote
    elif spec is not None and spec.strip().lower() not in UNSET_WORDS:
        from bastion.models.catalog import Catalog

        entry = Catalog(models_dir).resolve(spec.strip())
        if entry.info is None:
            raise SettingError(f"{entry.id} cannot be the default model: {entry.error}")
        if entry.info.is_embedding_model:
            raise SettingError(f"{entry.id} is an embedding model, not a chat model: choose "
                               "another (`bastion models list`).")
        if entry.origin in ("imported", "folder"):
            stored = entry.id
        elif entry.origin == "external":
            stored = str(entry.path)
    changed = dataclasses.replace(settings, default_model=stored)
    changed.save(path)
    return changed


def is_default_model(settings: Settings, entry: ModelEntry) -> bool:
    """Whether ``entry`` is the model Bastion starts with."""
    spec = settings.default_model
    if spec is None:
        return bool(entry.origin == "embedded")
    return spec in (entry.id, entry.path.name, str(entry.path))
