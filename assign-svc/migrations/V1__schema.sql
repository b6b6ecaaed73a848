COMMENT ON SCHEMA assign IS 'assign-svc: floor plans, reservations and reassign jobs';

-- btree_gist lets one exclusion constraint combine equality (restaurant, table) with
-- range overlap (during).
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- A restaurant that has a floor plan.
CREATE TABLE assign.restaurants (
    restaurant_id text PRIMARY KEY CHECK (char_length(restaurant_id) BETWEEN 1 AND 64),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The tables of each floor plan; replaced as a whole by PutFloorPlan.
CREATE TABLE assign.tables (
    restaurant_id text NOT NULL REFERENCES assign.restaurants ON DELETE CASCADE,
    table_id      text NOT NULL CHECK (char_length(table_id) BETWEEN 1 AND 64),
    seats         integer NOT NULL CHECK (seats BETWEEN 1 AND 100),
    combine_group text NOT NULL DEFAULT '' CHECK (char_length(combine_group) <= 64),
    PRIMARY KEY (restaurant_id, table_id)
);

-- What assign-svc knows about each booking: the newest version seen (by Assign, a
-- submit or a Release), whether and at which version it was released, and the
-- assignment it holds (one per booking, at most).
CREATE TABLE assign.bookings (
    booking_id       uuid PRIMARY KEY,
    newest_version   bigint NOT NULL DEFAULT 0 CHECK (newest_version >= 0),
    released_version bigint,
    assigned_version bigint CHECK (assigned_version >= 1),
    restaurant_id    text,
    party_size       integer,
    during           tstzrange,
    table_ids        text[],
    assigned_at      timestamptz,
    CONSTRAINT assignment_complete CHECK (
        (assigned_version IS NULL) = (restaurant_id IS NULL)
        AND (assigned_version IS NULL) = (party_size IS NULL)
        AND (assigned_version IS NULL) = (during IS NULL)
        AND (assigned_version IS NULL) = (table_ids IS NULL)
    ),
    CONSTRAINT assigned_not_newer CHECK (assigned_version <= newest_version)
);

-- Live assignments of a restaurant (PutFloorPlan checks them).
CREATE INDEX bookings_assigned_by_restaurant ON assign.bookings (restaurant_id, upper(during))
    WHERE assigned_version IS NOT NULL;

-- One row per reserved table. Two overlapping reservations of one table cannot exist,
-- whatever the concurrency.
CREATE TABLE assign.reservations (
    restaurant_id text NOT NULL,
    table_id      text NOT NULL,
    booking_id    uuid NOT NULL REFERENCES assign.bookings ON DELETE CASCADE,
    version       bigint NOT NULL,
    during        tstzrange NOT NULL CHECK (NOT isempty(during)),
    CONSTRAINT no_double_booking EXCLUDE USING gist (restaurant_id WITH =, table_id WITH =, during WITH &&)
);

CREATE INDEX reservations_by_booking ON assign.reservations (booking_id);

-- Background reassign jobs: one per booking (a newer version replaces the older one).
-- `waiting` jobs are claimed with FOR UPDATE SKIP LOCKED and a lease (`lease_id`,
-- `locked_until`); the other states are final.
CREATE TABLE assign.jobs (
    booking_id      uuid PRIMARY KEY REFERENCES assign.bookings ON DELETE CASCADE,
    version         bigint NOT NULL CHECK (version >= 1),
    restaurant_id   text NOT NULL,
    party_size      integer NOT NULL CHECK (party_size BETWEEN 1 AND 100),
    during          tstzrange NOT NULL,
    state           text NOT NULL CHECK (state IN ('waiting', 'assigned', 'superseded', 'gave_up', 'cancelled', 'released')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    -- Bumped whenever freed capacity wakes the job, so an attempt that raced with the
    -- wake-up retries at once instead of backing off.
    wakes           bigint NOT NULL DEFAULT 0,
    lease_id        uuid,
    locked_until    timestamptz,
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX jobs_due ON assign.jobs (next_attempt_at) WHERE state = 'waiting';
CREATE INDEX jobs_waiting_by_restaurant ON assign.jobs (restaurant_id) WHERE state = 'waiting';
