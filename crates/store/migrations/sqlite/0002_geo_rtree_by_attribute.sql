-- The GeoProperty name moves from an auxiliary column of the R*Tree (read from a side table for every
-- candidate) into a third dimension of the tree itself: a number from geo_attrs, stored as [a, a]. A query for
-- one GeoProperty then only visits that property's boxes. The entity's seq is gid / 64 (no auxiliary column).
CREATE TABLE geo_attrs (
    id INTEGER PRIMARY KEY,
    attr TEXT NOT NULL UNIQUE
);
INSERT INTO geo_attrs (attr) SELECT DISTINCT attr FROM geo_index ORDER BY attr;

CREATE VIRTUAL TABLE geo_rtree USING rtree (gid, minx, maxx, miny, maxy, mina, maxa);
INSERT INTO geo_rtree (gid, minx, maxx, miny, maxy, mina, maxa)
    SELECT g.gid, g.minx, g.maxx, g.miny, g.maxy, a.id, a.id FROM geo_index g JOIN geo_attrs a ON a.attr = g.attr;
DROP TABLE geo_index;
