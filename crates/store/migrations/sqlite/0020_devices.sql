-- The device layer's private records (misto-devices): devices, device profiles and dead letters. The public
-- side of a device is its NGSI-LD Device entity, written through the broker like any entity.
CREATE TABLE devices (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    dev_eui TEXT,
    profile_id TEXT,
    token_hash TEXT,
    doc TEXT NOT NULL,
    last_seen_ms INTEGER,
    battery REAL,
    rssi REAL,
    snr REAL,
    gateway TEXT,
    last_fcnt INTEGER,
    fcnt_gaps INTEGER NOT NULL DEFAULT 0,
    uplinks INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX devices_by_eui ON devices (tenant, dev_eui) WHERE dev_eui IS NOT NULL;

CREATE TABLE device_profiles (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    device TEXT,
    reason TEXT NOT NULL,
    uplink TEXT NOT NULL
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, id);
