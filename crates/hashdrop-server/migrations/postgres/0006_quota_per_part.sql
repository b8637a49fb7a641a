-- A multipart upload's quota is counted part by part, each part once, when its URL
-- is first signed (the URL lets exactly that many bytes land), instead of the whole
-- declared size at presign. `held_bytes` is what a live file holds: the declared
-- size for a single PUT, the parts counted so far for a multipart upload. NULL means
-- the whole declared size was reserved at presign: every file from before this
-- migration, and any file an older instance presigns during a rolling upgrade (it
-- does not know the column); readers take COALESCE(held_bytes, encrypted_size).
ALTER TABLE files ADD COLUMN held_bytes BIGINT;

-- The parts of pending multipart uploads whose bytes are counted.
CREATE TABLE upload_parts (
    file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    part_number BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (file_id, part_number)
);
