"""Bastion's application layer: use cases, the CLI and (in ``gui/``) the Qt window.

Importing this package makes the process offline before any machine-learning library can be
imported: the Hugging Face stack must never look for a hub, and must never phone home.
"""

from bastion.desktop.offline import enforce_offline_environment

enforce_offline_environment()
