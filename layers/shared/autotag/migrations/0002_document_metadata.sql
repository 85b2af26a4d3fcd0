-- Metadata the document itself declares (PDF info, Office core properties, e-mail headers,
-- RTF info), next to the title the first migration already has.
ALTER TABLE documents
    ADD COLUMN author text,
    ADD COLUMN content_created_at timestamptz,
    ADD COLUMN page_count integer;
