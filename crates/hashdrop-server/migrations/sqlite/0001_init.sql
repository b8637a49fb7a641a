-- All timestamps are unix milliseconds (INTEGER) so the same queries run on SQLite and
-- PostgreSQL through sqlx's Any driver.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    verified_at INTEGER,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    file_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE otps (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX otps_expires_at ON otps(expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    replaced_by TEXT
);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens(expires_at);

-- Single row holding bytes reserved across all users; updated with a conditional
-- UPDATE so the global quota check and reservation are one atomic step.
CREATE TABLE global_usage (
    id INTEGER PRIMARY KEY,
    used_bytes INTEGER NOT NULL
);
INSERT INTO global_usage (id, used_bytes) VALUES (1, 0);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    object_key TEXT NOT NULL,
    file_name TEXT NOT NULL,
    mime_type TEXT,
    plaintext_hash TEXT NOT NULL,
    plaintext_size INTEGER NOT NULL DEFAULT 0,
    encrypted_size INTEGER NOT NULL,
    key_mode TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at INTEGER,
    max_downloads INTEGER,
    download_count INTEGER NOT NULL DEFAULT 0,
    -- Per-file daily counter kept on the row so one conditional UPDATE both checks
    -- and counts a download (UTC day number since the epoch).
    dl_day INTEGER NOT NULL DEFAULT 0,
    dl_day_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX files_user_created ON files(user_id, created_at);
CREATE INDEX files_status_updated ON files(status, updated_at);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    locked_until INTEGER,
    last_error TEXT,
    dedupe_key TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_state_run_at ON jobs(state, run_at);
