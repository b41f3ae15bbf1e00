-- The list routes page newest first with a keyset on (created_at, id) (GET /api/audiences and
-- GET /api/segments, `limit` and `cursor`): with these indexes a page is an index range scan of
-- `limit` rows instead of a sort of the whole table. A b-tree is read backwards for DESC.
CREATE INDEX idx_custom_audience_created_at_id ON custom_audience (created_at, id);
CREATE INDEX idx_segment_created_at_id ON segment (created_at, id);
