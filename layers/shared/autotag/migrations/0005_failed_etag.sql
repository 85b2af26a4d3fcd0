-- The ETag of the version whose last attempt failed (NULL once an attempt succeeds). A document
-- that was embedded keeps its old version's row and vector when an overwrite fails, so without
-- it the reconcile would see that row as stale on every pass and enqueue the failing version
-- again, past the redrive's cap on retries: with it, a failure of the current version is left
-- to its DLQ message (redriven at most 3 times, then parked with its reason).
ALTER TABLE documents ADD COLUMN failed_etag text;
