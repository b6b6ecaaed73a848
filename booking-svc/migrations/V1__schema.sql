COMMENT ON SCHEMA booking IS 'booking-svc: bookings, history, outbox and reassign jobs';

-- One row per booking: its current version. Older versions live on in the history.
CREATE TABLE booking.bookings (
    id            uuid PRIMARY KEY,
    restaurant_id text NOT NULL CHECK (length(restaurant_id) BETWEEN 1 AND 64),
    guest_name    text NOT NULL,
    guest_email   text NOT NULL,
    guest_phone   text NOT NULL DEFAULT '',
    party_size    integer NOT NULL CHECK (party_size BETWEEN 1 AND 100),
    start_time    timestamptz NOT NULL,
    duration_s    integer NOT NULL CHECK (duration_s BETWEEN 900 AND 43200),
    notes         text NOT NULL DEFAULT '' CHECK (char_length(notes) <= 2000),
    status        text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    version       bigint NOT NULL CHECK (version >= 1),
    table_ids     text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- When the current version was requested (for the edit-to-confirmation latency).
    version_at    timestamptz NOT NULL,
    CHECK (status = 'CONFIRMED' OR cardinality(table_ids) = 0)
);
CREATE INDEX bookings_by_restaurant_time ON booking.bookings (restaurant_id, start_time, id);

-- Everything that happened to a booking, append-only, oldest first by id.
CREATE TABLE booking.history (
    id         bigserial PRIMARY KEY,
    booking_id uuid NOT NULL REFERENCES booking.bookings (id),
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    type       text NOT NULL,
    version    bigint NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX history_by_booking ON booking.history (booking_id, id);

-- Emails to hand to notify-svc, at most one per (booking, kind, version). The payload is
-- fixed when queued so every retry sends the same details.
CREATE TABLE booking.outbox (
    id            bigserial PRIMARY KEY,
    booking_id    uuid NOT NULL REFERENCES booking.bookings (id),
    version       bigint NOT NULL,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'QUEUED' CHECK (state IN ('QUEUED', 'DONE', 'DROPPED', 'FAILED')),
    due_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    last_error    text,
    trace_context jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (booking_id, kind, version)
);
CREATE INDEX outbox_queued ON booking.outbox (due_at) WHERE state = 'QUEUED';

-- Background assignment of one booking version. `recorded` is false until the inline
-- result (or its absence) was recorded: a job found due and unrecorded belongs to a
-- request that died between its apply and record steps.
CREATE TABLE booking.reassign_jobs (
    booking_id      uuid NOT NULL REFERENCES booking.bookings (id),
    version         bigint NOT NULL,
    state           text NOT NULL CHECK (state IN ('OPEN', 'ASSIGNED', 'SUPERSEDED', 'GAVE_UP', 'CANCELLED')),
    due_at          timestamptz NOT NULL,
    recorded        boolean NOT NULL DEFAULT false,
    suppress_emails boolean NOT NULL DEFAULT false,
    lease_owner     uuid,
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    trace_context   jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (booking_id, version)
);
CREATE INDEX reassign_jobs_open ON booking.reassign_jobs (due_at) WHERE state = 'OPEN';

-- Tables to release in assign-svc after a cancel (assign-svc may be down at that moment).
CREATE TABLE booking.release_tasks (
    booking_id    uuid PRIMARY KEY REFERENCES booking.bookings (id),
    state         text NOT NULL DEFAULT 'OPEN' CHECK (state IN ('OPEN', 'DONE', 'FAILED')),
    due_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    last_error    text,
    trace_context jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX release_tasks_open ON booking.release_tasks (due_at) WHERE state = 'OPEN';

-- Idempotency keys of Create/Edit/Cancel: the request's fingerprint and, once answered,
-- the booking as first answered.
CREATE TABLE booking.idempotency (
    rpc         text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    booking_id  uuid NOT NULL,
    response    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rpc, key)
);
