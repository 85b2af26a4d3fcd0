-- Initial schema. `{dimensions}` is the deployment's vector size, substituted as a literal
-- by the migration runner (DDL cannot take bind parameters); it is fixed for the life of
-- the database and recorded in `deployment` so a mismatch is a start-up error.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE deployment (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    embedding_dimensions integer NOT NULL,
    embedding_model text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- change_version moves whenever the workspace's set of embedded vectors changes;
-- clustered_version is the change_version the current categories were computed from,
-- so duplicate or stale cluster requests are recognised without loading anything.
CREATE TABLE workspaces (
    workspace text PRIMARY KEY,
    change_version bigint NOT NULL DEFAULT 0,
    clustered_version bigint NOT NULL DEFAULT 0,
    clustered_at timestamptz
);

CREATE TABLE documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace text NOT NULL REFERENCES workspaces (workspace),
    bucket text NOT NULL,
    key text NOT NULL,
    etag text,
    version_id text,
    sequencer text,
    content_sha256 text,
    size_bytes bigint,
    content_type text,
    title text,
    status text NOT NULL CHECK (status IN ('embedded', 'skipped', 'failed', 'deleted')),
    reason text,
    model text,
    token_count integer,
    chunk_count integer,
    embedding vector({dimensions}),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    embedded_at timestamptz,
    UNIQUE (workspace, bucket, key)
);

CREATE INDEX documents_workspace_status ON documents (workspace, status);
CREATE INDEX documents_embedding_hnsw ON documents USING hnsw (embedding vector_cosine_ops);

CREATE TABLE chunks (
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    workspace text NOT NULL,
    ordinal integer NOT NULL,
    text text NOT NULL,
    token_count integer NOT NULL,
    embedding vector({dimensions}) NOT NULL,
    PRIMARY KEY (document_id, ordinal)
);

CREATE INDEX chunks_workspace ON chunks (workspace);
CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);

CREATE TABLE categories (
    workspace text NOT NULL REFERENCES workspaces (workspace),
    id text NOT NULL,
    label text NOT NULL,
    keywords text[] NOT NULL,
    centroid vector({dimensions}) NOT NULL,
    size integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, id)
);

-- One category per document for now; the primary key would widen for multi-label.
CREATE TABLE document_categories (
    workspace text NOT NULL,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    category_id text NOT NULL,
    score real NOT NULL,
    PRIMARY KEY (document_id),
    FOREIGN KEY (workspace, category_id) REFERENCES categories (workspace, id) ON DELETE CASCADE
);

CREATE INDEX document_categories_category ON document_categories (workspace, category_id);
