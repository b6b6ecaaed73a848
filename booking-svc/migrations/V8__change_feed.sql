-- The change feed (WatchBookingChanges): one row per change of a booking's state, written
-- by the statement or transaction that makes the change, beside its history event.
--
-- A change's position is its id, taken from a sequence with no cache (each id is handed
-- out once, in increasing order, across sessions), and always by a statement that has
-- written the booking's row before it in the same transaction. So the transaction holding
-- an id already had a transaction id when it took it, and changes of one booking (written
-- under its row lock) get increasing ids in commit order. Ids commit out of order across
-- bookings: the feed publishes an id only once every transaction that could still commit
-- a smaller one has ended (see the feed's sequencer and docs/architecture.md).
--
-- The row holds the booking's state after the change; what never changes (restaurant,
-- guest, creation time) is read from booking.bookings. No foreign key and no other index:
-- the feed reads by position only, and every insert stays one heap tuple and one index
-- entry.
CREATE SEQUENCE booking.change_position AS bigint CACHE 1;

CREATE TABLE booking.changes (
    id          bigint PRIMARY KEY DEFAULT nextval('booking.change_position'),
    booking_id  uuid NOT NULL,
    type        text NOT NULL,
    version     bigint NOT NULL,
    status      text NOT NULL,
    party_size  integer NOT NULL,
    start_time  timestamptz NOT NULL,
    duration_s  integer NOT NULL,
    notes       text NOT NULL,
    table_ids   text[] NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- Each field the change altered: [{field, from, to}].
    changes     jsonb NOT NULL DEFAULT '[]',
    -- Who made it, when known.
    actor       text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE booking.change_position OWNED BY booking.changes.id;
COMMENT ON TABLE booking.changes IS 'The change feed: each change of a booking''s state, in position (id) order';
