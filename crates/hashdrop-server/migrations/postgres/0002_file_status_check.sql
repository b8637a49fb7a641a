-- A file's status is pending, uploaded, failed or deleted; anything else is
-- a bug that must fail loudly instead of being stored (the four states of the
-- life described in docs/ARCHITECTURE.md).
ALTER TABLE files ADD CONSTRAINT files_status_valid
    CHECK (status IN ('pending', 'uploaded', 'failed', 'deleted'));
-- The local store's upload route checks that a pending file owns the key it writes.
CREATE INDEX files_object_key ON files(object_key);
