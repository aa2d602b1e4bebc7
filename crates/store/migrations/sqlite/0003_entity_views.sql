-- A rendering of each entity made at write time (zstd-compressed normalized JSON, compacted with the writer's
-- context) and the fingerprint of that context: reads with an equal context are answered from it.
ALTER TABLE entities ADD COLUMN view BLOB;
ALTER TABLE entities ADD COLUMN view_ctx INTEGER;
