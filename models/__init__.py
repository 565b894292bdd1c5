"""Everything about language models: GGUF catalog and checks, the engine process, templates.

Free of Qt, of ``bastion.desktop`` and of ``bastion.store``.
"""
