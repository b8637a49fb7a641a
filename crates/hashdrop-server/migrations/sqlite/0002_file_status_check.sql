-- A file's status is pending, uploaded, failed or deleted; anything else is
-- a bug that must fail loudly instead of being stored (the four states of the
-- life described in docs/ARCHITECTURE.md). SQLite cannot add a CHECK to
-- an existing table, so the table is rebuilt with it (nothing references `files`).
CREATE TABLE files_new (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    object_key TEXT NOT NULL,
    file_name TEXT NOT NULL,
    mime_type TEXT,
    plaintext_hash TEXT NOT NULL,
    plaintext_size INTEGER NOT NULL DEFAULT 0,
    encrypted_size INTEGER NOT NULL,
    key_mode TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'uploaded', 'failed', 'deleted')),
    expires_at INTEGER,
    max_downloads INTEGER,
    download_count INTEGER NOT NULL DEFAULT 0,
    dl_day INTEGER NOT NULL DEFAULT 0,
    dl_day_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO files_new (id, user_id, object_key, file_name, mime_type, plaintext_hash,
    plaintext_size, encrypted_size, key_mode, status, expires_at, max_downloads,
    download_count, dl_day, dl_day_count, created_at, updated_at)
SELECT id, user_id, object_key, file_name, mime_type, plaintext_hash,
    plaintext_size, encrypted_size, key_mode, status, expires_at, max_downloads,
    download_count, dl_day, dl_day_count, created_at, updated_at
FROM files;
DROP TABLE files;
ALTER TABLE files_new RENAME TO files;
CREATE INDEX files_user_created ON files(user_id, created_at);
CREATE INDEX files_status_updated ON files(status, updated_at);
-- The local store's upload route checks that a pending file owns the key it writes.
CREATE INDEX files_object_key ON files(object_key);
