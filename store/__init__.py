"""Everything SQLite: documents, parsers, chunking, embeddings, hybrid search, chat history.

Free of Qt, of ``bastion.desktop`` and of ``bastion.models``.
"""
