-- Downlink commands of the device layer (misto-devices) and, per device, how it last reached misto (the
-- route its downlinks take back). States: queued, sent, acknowledged, failed.
CREATE TABLE device_commands (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    device TEXT NOT NULL,
    f_port BIGINT NOT NULL,
    bytes TEXT NOT NULL,
    confirmed BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX device_commands_by_device ON device_commands (tenant, device, created_ms);

CREATE TABLE device_routes (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    route TEXT NOT NULL,
    PRIMARY KEY (tenant, device)
);
