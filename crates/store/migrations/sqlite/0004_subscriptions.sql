-- Subscriptions (their document is the broker's internal form) and their delivery status.
CREATE TABLE subscriptions (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    times_sent INTEGER NOT NULL DEFAULT 0,
    times_failed INTEGER NOT NULL DEFAULT 0,
    last_notification TEXT,
    last_success TEXT,
    last_failure TEXT
);
CREATE UNIQUE INDEX subscriptions_tenant_id ON subscriptions (tenant, id);

-- Entity changes of tenants that have subscriptions, written in the change's own transaction; the notifier
-- turns them into outbox rows and removes them.
CREATE TABLE change_journal (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    before BLOB,
    after BLOB
);

-- Notifications not yet delivered (or finally failed).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL
);
CREATE INDEX outbox_subscription ON outbox (tenant, subscription_id, id);
