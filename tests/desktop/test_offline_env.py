"""Importing bastion.desktop makes the process offline before any ML library is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from bastion.desktop.offline import OFFLINE_ENVIRONMENT

ML_MODULES = ("torch", "transformers", "sentence_transformers", "huggingface_hub", "llama_cpp")

# Records, at the moment each ML module is first imported, whether the offline variables were
# set; then imports the whole CLI (every command module) and the ML libraries.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    ML = set(json.loads(sys.argv[1]))
    OFFLINE = json.loads(sys.argv[2])
    seen = {}

    class Watch:
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in ML and top not in seen:
                seen[top] = all(os.environ.get(k) == v for k, v in OFFLINE.items())
            return None

    sys.meta_path.insert(0, Watch())
    preloaded = sorted(m for m in ML if m in sys.modules)

    import bastion.desktop
    after_package = sorted(m for m in ML if m in sys.modules)
    env_after_package = {k: os.environ.get(k) for k in OFFLINE}

    import bastion.desktop.cli
    bastion.desktop.cli.build_parser()  # imports every command module
    import sentence_transformers, transformers, huggingface_hub.constants as hub
    print(json.dumps({"preloaded": preloaded, "after_package": after_package,
                      "env": env_after_package, "seen": seen,
                      "hub_offline": bool(hub.HF_HUB_OFFLINE)}))
    """
)


def test_offline_variables_are_set_before_any_ml_import() -> None:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENVIRONMENT}
    env["HF_HUB_OFFLINE"] = "0"  # a user's own value must not switch the hub back on
    env["TRANSFORMERS_OFFLINE"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ML_MODULES), json.dumps(OFFLINE_ENVIRONMENT)],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["preloaded"] == []
    assert out["after_package"] == []  # importing the package pulls in no ML library
    assert out["env"] == OFFLINE_ENVIRONMENT
    assert {"torch", "transformers", "sentence_transformers", "huggingface_hub"} <= set(out["seen"])
    assert all(out["seen"].values()), out["seen"]  # offline at every first ML import
    assert out["hub_offline"] is True
