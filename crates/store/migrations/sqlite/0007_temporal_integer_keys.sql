-- The temporal store with integer keys: entity ids and attribute/type IRIs are kept once each
-- (temporal_entities.eid, temporal_names.nid), and series and type rows hold only those numbers. Series keyed by
-- text (tenant, entity IRI, attribute IRI) cost about 200 bytes of table and index per attribute of every entity,
-- written on every new entity; integers cost a tenth of that. Series numbers (sid) and instances are kept as
-- they are.
CREATE TABLE temporal_names (
    nid INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE UNIQUE INDEX temporal_names_key ON temporal_names (tenant, name);
INSERT INTO temporal_names (tenant, name)
    SELECT DISTINCT tenant, attr FROM temporal_series
    UNION SELECT DISTINCT tenant, type FROM temporal_types;

CREATE TABLE temporal_entities_v2 (
    eid INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL
);
INSERT INTO temporal_entities_v2 (tenant, id, types) SELECT tenant, id, types FROM temporal_entities;
INSERT INTO temporal_entities_v2 (tenant, id, types)
    SELECT DISTINCT s.tenant, s.entity, '[]' FROM temporal_series s
    WHERE NOT EXISTS (SELECT 1 FROM temporal_entities e WHERE e.tenant = s.tenant AND e.id = s.entity);
CREATE UNIQUE INDEX temporal_entities_key ON temporal_entities_v2 (tenant, id);

CREATE TABLE temporal_types_v2 (
    eid INTEGER NOT NULL,
    nid INTEGER NOT NULL,
    PRIMARY KEY (eid, nid)
) WITHOUT ROWID;
INSERT OR IGNORE INTO temporal_types_v2 (eid, nid)
    SELECT e.eid, n.nid FROM temporal_types t
    JOIN temporal_entities_v2 e ON e.tenant = t.tenant AND e.id = t.id
    JOIN temporal_names n ON n.tenant = t.tenant AND n.name = t.type;

CREATE TABLE temporal_series_v2 (
    sid INTEGER PRIMARY KEY,
    eid INTEGER NOT NULL,
    aid INTEGER NOT NULL,
    dataset TEXT NOT NULL
);
INSERT INTO temporal_series_v2 (sid, eid, aid, dataset)
    SELECT s.sid, e.eid, n.nid, s.dataset FROM temporal_series s
    JOIN temporal_entities_v2 e ON e.tenant = s.tenant AND e.id = s.entity
    JOIN temporal_names n ON n.tenant = s.tenant AND n.name = s.attr;

DROP TABLE temporal_series;
DROP TABLE temporal_types;
DROP TABLE temporal_entities;
ALTER TABLE temporal_entities_v2 RENAME TO temporal_entities;
ALTER TABLE temporal_types_v2 RENAME TO temporal_types;
ALTER TABLE temporal_series_v2 RENAME TO temporal_series;
-- By type for selection and retention.
CREATE INDEX temporal_types_name ON temporal_types (nid, eid);
CREATE UNIQUE INDEX temporal_series_key ON temporal_series (eid, aid, dataset);
