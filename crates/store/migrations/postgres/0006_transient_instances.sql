-- Instances of transient attributes (V1.9 `expiresAt`, ms since the epoch): gone from reads once due, removed by
-- the expiry sweep through the partial index, which only transient instances enter.
ALTER TABLE attr_instances ADD COLUMN expires BIGINT;
CREATE INDEX attr_instances_expires ON attr_instances (expires) WHERE expires IS NOT NULL;
