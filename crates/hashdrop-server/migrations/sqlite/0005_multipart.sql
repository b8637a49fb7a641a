-- Multipart uploads: the store's upload id (empty for a single PUT) and how the
-- object is cut (part 1, then equal parts, the last one shorter), so the server can
-- sign each part for its exact length and check the parts before completing.
ALTER TABLE files ADD COLUMN upload_id TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN first_part_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN part_bytes BIGINT NOT NULL DEFAULT 0;
