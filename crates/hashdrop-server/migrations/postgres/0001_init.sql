-- All timestamps are unix milliseconds (INTEGER) so the same queries run on SQLite and
-- PostgreSQL through sqlx's Any driver.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    verified_at BIGINT,
    used_bytes BIGINT NOT NULL DEFAULT 0,
    file_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE otps (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX otps_expires_at ON otps(expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    replaced_by TEXT
);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens(expires_at);

-- Single row holding bytes reserved across all users; updated with a conditional
-- UPDATE so the global quota check and reservation are one atomic step.
CREATE TABLE global_usage (
    id BIGINT PRIMARY KEY,
    used_bytes BIGINT NOT NULL
);
INSERT INTO global_usage (id, used_bytes) VALUES (1, 0);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    object_key TEXT NOT NULL,
    file_name TEXT NOT NULL,
    mime_type TEXT,
    plaintext_hash TEXT NOT NULL,
    plaintext_size BIGINT NOT NULL DEFAULT 0,
    encrypted_size BIGINT NOT NULL,
    key_mode TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at BIGINT,
    max_downloads BIGINT,
    download_count BIGINT NOT NULL DEFAULT 0,
    -- Per-file daily counter kept on the row so one conditional UPDATE both checks
    -- and counts a download (UTC day number since the epoch).
    dl_day BIGINT NOT NULL DEFAULT 0,
    dl_day_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX files_user_created ON files(user_id, created_at);
CREATE INDEX files_status_updated ON files(status, updated_at);

CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    locked_until BIGINT,
    last_error TEXT,
    dedupe_key TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_state_run_at ON jobs(state, run_at);
