-- The owner's listing (GET /api/files/all) is built as JSON by the database, and
-- formatting every row's creation time there cost as much as the rest of the query:
-- the RFC 3339 text is written once, when the row is created.
ALTER TABLE files ADD COLUMN created_at_rfc3339 TEXT NOT NULL DEFAULT '';
UPDATE files SET created_at_rfc3339 =
    to_char(to_timestamp(created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
