-- The filter head of each entity (see doc::head): its members with attribute instances reduced to kind and
-- value, so that query filters on values judge a candidate without inflating the whole document. NULL (rows
-- written before this migration) makes filters read the document.
ALTER TABLE entities ADD COLUMN head BLOB;
