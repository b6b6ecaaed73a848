-- The hand-off of a version between its request and the background lives in the booking's
-- row. A create or edit no longer writes a reassign job up front: it sets `handoff_due_at`
-- (when the background takes the version over if its request has not recorded the inline
-- result by then) with what the background would need (`handoff_suppress`,
-- `handoff_trace`). Recording the inline result clears it, and writes a job only when the
-- booking stays PENDING; the dispatcher turns hand-offs that came due (the request died)
-- into jobs, as it found the unrecorded jobs before. An edit confirmed inline thus writes
-- no job row (before: one insert and two updates of the job table, and their index
-- entries), and the guard "not taken over" is a column of the row the confirmation
-- updates, so it holds without locking the row first.
--
-- Invariant: while `handoff_due_at` is set, the booking's current version has no job.
-- Jobs written before this migration (with `handoff_due_at` NULL) go on as they were.
ALTER TABLE booking.bookings
    ADD COLUMN handoff_due_at timestamptz,
    ADD COLUMN handoff_suppress boolean NOT NULL DEFAULT false,
    ADD COLUMN handoff_trace jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN booking.bookings.handoff_due_at IS
    'Set while the request of the current version may still record its inline result: when the background takes over';

-- Only the hand-offs in flight are indexed (a few per concurrent request).
CREATE INDEX bookings_handoff_due ON booking.bookings (handoff_due_at) WHERE handoff_due_at IS NOT NULL;
