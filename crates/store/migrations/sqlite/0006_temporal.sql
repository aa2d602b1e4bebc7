-- The temporal store (see src/temporal.rs). A series is one attribute (and datasetId) of one entity; its
-- instances are keyed (sid, t), so one history is a range scan of `attr_instances_series` whatever the table's
-- size. Instances are appended in rowid order (cheap inserts); `num` sits in the index so that aggregations over
-- numbers read the index only.
CREATE TABLE temporal_entities (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE temporal_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (tenant, id, type)
) WITHOUT ROWID;
-- Keyed by entity so that replacing an entity's types is a key range; by type for selection and retention.
CREATE INDEX temporal_types_type ON temporal_types (type, tenant, id);

CREATE TABLE temporal_series (
    sid INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    entity TEXT NOT NULL,
    attr TEXT NOT NULL,
    dataset TEXT NOT NULL
);
CREATE UNIQUE INDEX temporal_series_key ON temporal_series (tenant, entity, attr, dataset);

CREATE TABLE attr_instances (
    iid INTEGER PRIMARY KEY,
    sid INTEGER NOT NULL,
    t INTEGER NOT NULL,
    observed INTEGER NOT NULL,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    num REAL,
    doc TEXT
);
CREATE INDEX attr_instances_series ON attr_instances (sid, t, num);
