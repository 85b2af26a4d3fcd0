"""autotag: keep a cloud drive sorted into categories from its documents' embeddings.

The package is the domain layer shared by every Lambda function (through a SAM layer)
and by the local pipeline (`autotag run`). Each module owns one thing: events, extraction,
chunking, embeddings, store, clustering, labels.
"""

__version__ = "0.1.0"
