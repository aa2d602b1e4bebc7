-- Downlink commands of the device layer (misto-devices) and, per device, how it last reached misto (the
-- route its downlinks take back). States: queued, sent, acknowledged, failed.
CREATE TABLE device_commands (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    device TEXT NOT NULL,
    f_port INTEGER NOT NULL,
    bytes TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX device_commands_by_device ON device_commands (tenant, device, created_ms);

CREATE TABLE device_routes (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    route TEXT NOT NULL,
    PRIMARY KEY (tenant, device)
);
