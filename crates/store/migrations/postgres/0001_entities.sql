-- Entities in the broker's stored form, one row per (tenant, id). `seq` gives insertion order.
-- The document is kept as text: it is parsed by the broker, never queried inside PostgreSQL.
CREATE TABLE entities (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    expires_at TIMESTAMPTZ,
    UNIQUE (tenant, id)
);
CREATE INDEX entities_tenant_seq ON entities (tenant, seq);
CREATE INDEX entities_expires_at ON entities (expires_at) WHERE expires_at IS NOT NULL;

-- Type membership, for type filters without reading documents.
CREATE TABLE entity_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (tenant, type, seq)
);
CREATE INDEX entity_types_seq ON entity_types (seq);

-- Bounding boxes of GeoProperty instances with a GiST index (PostGIS adds a geometry column at start when
-- the extension is available).
CREATE TABLE geo_index (
    seq BIGINT NOT NULL,
    attr TEXT NOT NULL,
    bbox BOX NOT NULL
);
CREATE INDEX geo_index_bbox ON geo_index USING GIST (bbox);
CREATE INDEX geo_index_seq ON geo_index (seq);

-- Counters behind /types and /attributes: per tenant, type ("" = all), attribute ("" = the entity), kind.
CREATE TABLE type_attr_counts (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    attr TEXT NOT NULL,
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tenant, type, attr, kind)
);
