-- A file's upload_id names the store's *unfinished* multipart upload. Completion
-- now clears it; rows completed before kept it, and deleting one later asked the
-- store to abort an upload it had already joined: AWS answers NoSuchUpload, but
-- other S3-compatible stores refuse (s3s-fs: 403 AccessDenied), and the delete job
-- retried until it was dead. Pending rows keep theirs; ended rows already queued
-- their delete job with the id in its payload.
UPDATE files SET upload_id = '' WHERE status = 'uploaded';
