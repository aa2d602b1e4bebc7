-- Context source registrations and entity maps: documents per (kind, tenant, id), opaque to the store, with
-- an optional expiry (ms since the epoch).
CREATE TABLE registry_docs (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    expires_ms BIGINT,
    UNIQUE (kind, tenant, id)
);
CREATE INDEX registry_docs_expiry ON registry_docs (expires_ms) WHERE expires_ms IS NOT NULL;
