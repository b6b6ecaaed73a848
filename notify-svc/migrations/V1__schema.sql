COMMENT ON SCHEMA notify IS 'notify-svc: the email ledger';

-- One row per (booking, kind, version): the key that makes "sent exactly once" true.
-- The first SendOnce inserts it; every later call reads it back. The delivery worker
-- claims QUEUED rows whose lease (locked_until) is free with FOR UPDATE SKIP LOCKED.
CREATE TABLE notify.deliveries (
    booking_id      uuid        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('BOOKING_PENDING', 'BOOKING_CONFIRMED',
                                    'MODIFICATION_REQUESTED', 'MODIFICATION_CONFIRMED', 'BOOKING_CANCELLED')),
    version         bigint      NOT NULL CHECK (version >= 1),
    recipient_email text        NOT NULL,
    recipient_name  text        NOT NULL DEFAULT '',
    details         jsonb       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('QUEUED', 'SENT', 'SUPPRESSED', 'FAILED')),
    message_id      text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text,
    next_attempt_at timestamptz,
    locked_until    timestamptz,
    PRIMARY KEY (booking_id, kind, version),
    CHECK ((state = 'SENT') = (sent_at IS NOT NULL)),
    CHECK (state = 'QUEUED' OR (next_attempt_at IS NULL AND locked_until IS NULL))
);

COMMENT ON TABLE notify.deliveries IS 'The email ledger: one row per (booking_id, kind, version), never deleted';
COMMENT ON COLUMN notify.deliveries.details IS 'What the email says, as the first SendOnce gave it (compared on repeats)';
COMMENT ON COLUMN notify.deliveries.attempts IS 'Delivery attempts started (claimed), including one running now';
COMMENT ON COLUMN notify.deliveries.locked_until IS 'Lease of the attempt in flight; nobody else sends the row before it passes';

-- The worker's queue: due QUEUED rows in due order.
CREATE INDEX deliveries_queued ON notify.deliveries (next_attempt_at) WHERE state = 'QUEUED';
