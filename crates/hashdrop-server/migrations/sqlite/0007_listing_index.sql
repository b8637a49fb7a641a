-- The owner's listing reads their files newest first, ties broken by id. An index in
-- exactly that order hands the rows over sorted: no per-request sort of every file
-- (SQLite built a temporary B-tree for it on each GET /api/files/all). It serves
-- every lookup the index it replaces did (same leading columns).
DROP INDEX files_user_created;
CREATE INDEX files_user_listing ON files(user_id, created_at DESC, id);
