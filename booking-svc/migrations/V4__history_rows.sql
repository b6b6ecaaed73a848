-- Every read of the history is by booking, oldest first: (booking_id, id) becomes the key,
-- and the index on id alone, written for every event (several per edit) and never read,
-- goes. The history stays append-only and ordered by id.
CREATE UNIQUE INDEX history_key ON booking.history (booking_id, id);
ALTER TABLE booking.history
    DROP CONSTRAINT history_pkey,
    ADD CONSTRAINT history_pkey PRIMARY KEY USING INDEX history_key;
DROP INDEX booking.history_by_booking;

-- Events written together, by one statement, share one row: the first in type, version and
-- detail, the ones after it, in order, in `later` (an array of {type, version, detail}).
-- An edit confirmed inline writes its inline attempt, its confirmation and its queued email
-- as one row, not three: each row costs an index entry and a foreign-key check.
ALTER TABLE booking.history ADD COLUMN later jsonb NOT NULL DEFAULT '[]';
COMMENT ON COLUMN booking.history.later IS 'Events written with this one, after it, in order: [{type, version, detail}]';
