-- Entities in the broker's stored form, one row per (tenant, id). `seq` gives insertion order.
CREATE TABLE entities (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    expires_at TEXT
);
CREATE UNIQUE INDEX entities_tenant_id ON entities (tenant, id);
CREATE INDEX entities_expires_at ON entities (expires_at) WHERE expires_at IS NOT NULL;

-- Type membership, for type filters without reading documents.
CREATE TABLE entity_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, seq)
) WITHOUT ROWID;
CREATE INDEX entity_types_seq ON entity_types (seq);

-- Spatial index of GeoProperty bounding boxes. gid = seq * 64 + n (n: the entity's n-th geo instance).
CREATE VIRTUAL TABLE geo_index USING rtree (gid, minx, maxx, miny, maxy, +seq INTEGER, +attr TEXT);

-- Counters behind /types and /attributes: entities per type ("" attr) and per (type, attribute, kind).
CREATE TABLE type_attr_counts (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    attr TEXT NOT NULL,
    kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, attr, kind)
) WITHOUT ROWID;

-- Insertion-ordered scans of one tenant.
CREATE INDEX entities_tenant_seq ON entities (tenant, seq);
