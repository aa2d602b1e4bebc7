-- Coordination of several misto nodes sharing this database (docs/cluster.md).

-- Bumped in the transaction of every subscription change: a node whose cached subscriptions were loaded at an
-- older version reloads them.
CREATE TABLE subscriptions_version (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    v BIGINT NOT NULL
);
INSERT INTO subscriptions_version (one, v) VALUES (TRUE, 0);

-- Which node delivers a subscription's notifications, until when (ms since the epoch).
CREATE TABLE delivery_leases (
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    node TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, subscription_id)
);

-- When a subscription may next be notified: timeInterval firings and throttling, once cluster-wide.
CREATE TABLE subscription_timers (
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    next_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, subscription_id)
);
