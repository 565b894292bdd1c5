"""``bastion settings get [KEY]`` and ``bastion settings set KEY VALUE``.

Thin: reading, checking and saving live in ``bastion.desktop.configuration``, which the window's
settings page uses too.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bastion.desktop.configuration import setting_keys


def register(subparsers: Any) -> None:
    settings = subparsers.add_parser(
        "settings", help="read and change settings: get [KEY], set KEY VALUE",
        description="Settings live in settings.json in the data folder. Keys: "
                    + ", ".join(setting_keys()) + ".")
    sub = settings.add_subparsers(dest="settings_command", metavar="ACTION", required=True)

    get = sub.add_parser("get", help="print every setting, or one")
    get.add_argument("key", metavar="KEY", nargs="?", choices=setting_keys(),
                     help="one setting (default: all)")
    get.add_argument("--json", action="store_true",
                     help="print JSON: one object of every setting, or the value of KEY")
    get.set_defaults(func=run_get)

    put = sub.add_parser("set", help="change one setting (checked, then saved)",
                         description="Change one setting. Numbers must lie in the setting's "
                                     "range; 'none' unsets an optional one (n_threads: all "
                                     "cores). The default model: `bastion models default`.")
    put.add_argument("key", metavar="KEY", choices=setting_keys(), help="the setting")
    put.add_argument("value", metavar="VALUE", help="its new value")
    put.set_defaults(func=run_set)


def run_get(args: argparse.Namespace) -> int:
    from bastion.desktop.configuration import read_setting
    from bastion.desktop.paths import data_paths
    from bastion.desktop.settings import Settings

    settings = Settings.load(data_paths().settings_file)
    if args.key:
        value = read_setting(settings, args.key)
        print(json.dumps(value, ensure_ascii=False) if args.json else _text(value))
        return 0
    values = {key: read_setting(settings, key) for key in setting_keys()}
    if args.json:
        print(json.dumps(values, ensure_ascii=False))
        return 0
    width = max(map(len, values))
    for key, value in values.items():
        print(f"{key:<{width}}  {_text(value)}")
    return 0


def run_set(args: argparse.Namespace) -> int:
    from bastion.desktop.configuration import change_setting, parse_setting, read_setting
    from bastion.desktop.paths import data_paths
    from bastion.desktop.settings import Settings

    path = data_paths().settings_file
    settings = Settings.load(path)
    before = read_setting(settings, args.key)
    if args.key == "default_model":
        from bastion.desktop.configuration import choose_default_model

        changed = choose_default_model(settings, path, data_paths().models_dir, args.value)
    else:
        changed = change_setting(settings, path, args.key, parse_setting(args.key, args.value))
    after = read_setting(changed, args.key)
    print(f"{args.key} = {_text(after)}" + ("" if after == before else f" (was {_text(before)})"))
    return 0


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and ("\n" in value or not value):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
