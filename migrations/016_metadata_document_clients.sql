-- Issue 14: clients identified by a URL (OAuth Client ID Metadata
-- Documents). Codes, tokens and consents reference clients (id), so a
-- client whose metadata is fetched from its client_id URL is kept here
-- too, refreshed from its document whenever that changes. metadata_document
-- marks such a row: it is the fetched document's, never the operator's,
-- and a fetch never overwrites a row without it.
ALTER TABLE clients
    ADD COLUMN metadata_document boolean NOT NULL DEFAULT false;
