-- The coordination tables of a shared store (docs/cluster.md); one process uses SQLite, so misto does not
-- use them here, but the store keeps them correct.

-- Bumped in the transaction of every subscription change: a node whose cached subscriptions were loaded at an
-- older version reloads them.
CREATE TABLE subscriptions_version (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    v INTEGER NOT NULL
);
INSERT INTO subscriptions_version (one, v) VALUES (1, 0);

-- Which node delivers a subscription's notifications, until when (ms since the epoch).
CREATE TABLE delivery_leases (
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    node TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, subscription_id)
);

-- When a subscription may next be notified: timeInterval firings and throttling, once cluster-wide.
CREATE TABLE subscription_timers (
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    next_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, subscription_id)
);
