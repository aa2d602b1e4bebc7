-- The temporal store (see src/temporal.rs). A series is one attribute (and datasetId) of one entity; its
-- instances are keyed (sid, t), so one history is a range scan of `attr_instances_series` whatever the table's
-- size. `num` is included in that index so that aggregations over numbers can be answered from it.
CREATE TABLE temporal_entities (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT[] NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE temporal_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (tenant, id, type)
);
-- Keyed by entity so that replacing an entity's types is a key range; by type for selection and retention.
CREATE INDEX temporal_types_type ON temporal_types (type, tenant, id);

CREATE TABLE temporal_series (
    sid BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    entity TEXT NOT NULL,
    attr TEXT NOT NULL,
    dataset TEXT NOT NULL,
    UNIQUE (tenant, entity, attr, dataset)
);

CREATE TABLE attr_instances (
    iid BIGSERIAL PRIMARY KEY,
    sid BIGINT NOT NULL,
    t BIGINT NOT NULL,
    observed BOOLEAN NOT NULL,
    created BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    num DOUBLE PRECISION,
    doc TEXT
);
CREATE INDEX attr_instances_series ON attr_instances (sid, t) INCLUDE (num);
