-- Subscriptions (their document is the broker's internal form) and their delivery status.
CREATE TABLE subscriptions (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    times_sent BIGINT NOT NULL DEFAULT 0,
    times_failed BIGINT NOT NULL DEFAULT 0,
    last_notification TEXT,
    last_success TEXT,
    last_failure TEXT,
    UNIQUE (tenant, id)
);

-- Entity changes of tenants that have subscriptions, written in the change's own transaction; the notifier
-- turns them into outbox rows and removes them.
CREATE TABLE change_journal (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    before TEXT,
    after TEXT
);

-- Notifications not yet delivered (or finally failed).
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    due_ms BIGINT NOT NULL
);
CREATE INDEX outbox_subscription ON outbox (tenant, subscription_id, id);
