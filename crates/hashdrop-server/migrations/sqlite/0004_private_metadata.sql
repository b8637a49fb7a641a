-- New uploads keep their name, media type and integrity check from the server: the
-- client sends the name and type sealed (docs/FORMAT.md) and a keyed BLAKE3 digest
-- instead of the plaintext SHA-256. Older rows keep file_name, mime_type and
-- plaintext_hash; for them these columns stay empty.
ALTER TABLE files ADD COLUMN keyed_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN meta_header TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN meta_sealed TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN meta_owner TEXT NOT NULL DEFAULT '';
