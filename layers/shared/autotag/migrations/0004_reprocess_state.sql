-- Where an unfinished reconcile stopped, so that the next invocation continues instead of
-- starting over: walking a large bucket can take more than one Lambda invocation (15 min).

-- One row per workspace (and bucket) reconciled. The S3 listing and the document rows are
-- walked together in key order (S3 lists keys in UTF-8 byte order, which is COLLATE "C"), so
-- one key is the cursor of both: after_key is the last key compared, NULL when no pass over
-- the workspace is in progress.
CREATE TABLE reconcile_cursors (
    workspace text NOT NULL,
    bucket text NOT NULL,
    after_key text COLLATE "C",
    started_at timestamptz,
    completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, bucket)
);

-- A reconcile of every workspace of a bucket. Workspaces are taken in the order of their key
-- prefix ('<workspace>/', the order S3 lists them in); after_prefix is the last one finished,
-- NULL when no such sweep is in progress.
CREATE TABLE reconcile_sweeps (
    bucket text PRIMARY KEY,
    after_prefix text COLLATE "C",
    started_at timestamptz,
    completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The reconcile's walk over one workspace's rows in S3's key order.
CREATE INDEX documents_reconcile_order ON documents (workspace, bucket, key COLLATE "C");

-- A sweep's step to the next workspace, in the same order.
CREATE INDEX workspaces_prefix_order ON workspaces (((workspace || '/') COLLATE "C"));
