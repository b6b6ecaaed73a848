-- The single-column checks of the tables every edit writes, as domains. PostgreSQL reads a
-- table CHECK constraint back from its stored text and plans it again in every statement
-- that writes the table, for every constraint, whatever the statement assigns (an edit
-- writes booking.bookings twice); a domain's check is prepared once per session and
-- evaluated only for the columns a statement assigns. Same rules, same rows accepted.
-- The check that spans two columns (status and table_ids) stays a table constraint.
--
-- The domains start without a constraint, so changing the column types rewrites no
-- table; adding each domain's constraint afterwards validates the rows already stored.
CREATE DOMAIN booking.restaurant_ref AS text;
CREATE DOMAIN booking.party_size AS integer;
CREATE DOMAIN booking.duration_s AS integer;
CREATE DOMAIN booking.notes AS text;
CREATE DOMAIN booking.booking_status AS text;
CREATE DOMAIN booking.booking_version AS bigint;
CREATE DOMAIN booking.job_state AS text;
CREATE DOMAIN booking.outbox_state AS text;

ALTER TABLE booking.bookings
    DROP CONSTRAINT bookings_restaurant_id_check,
    DROP CONSTRAINT bookings_party_size_check,
    DROP CONSTRAINT bookings_duration_s_check,
    DROP CONSTRAINT bookings_notes_check,
    DROP CONSTRAINT bookings_status_check,
    DROP CONSTRAINT bookings_version_check,
    ALTER COLUMN restaurant_id TYPE booking.restaurant_ref,
    ALTER COLUMN party_size TYPE booking.party_size,
    ALTER COLUMN duration_s TYPE booking.duration_s,
    ALTER COLUMN notes TYPE booking.notes,
    ALTER COLUMN status TYPE booking.booking_status,
    ALTER COLUMN version TYPE booking.booking_version;

ALTER TABLE booking.reassign_jobs
    DROP CONSTRAINT reassign_jobs_state_check,
    ALTER COLUMN state TYPE booking.job_state;

ALTER TABLE booking.outbox
    DROP CONSTRAINT outbox_state_check,
    ALTER COLUMN state TYPE booking.outbox_state;

ALTER DOMAIN booking.restaurant_ref ADD CONSTRAINT restaurant_ref_length CHECK (length(VALUE) BETWEEN 1 AND 64);
ALTER DOMAIN booking.party_size ADD CONSTRAINT party_size_range CHECK (VALUE BETWEEN 1 AND 100);
ALTER DOMAIN booking.duration_s ADD CONSTRAINT duration_s_range CHECK (VALUE BETWEEN 900 AND 43200);
ALTER DOMAIN booking.notes ADD CONSTRAINT notes_length CHECK (char_length(VALUE) <= 2000);
ALTER DOMAIN booking.booking_status ADD CONSTRAINT booking_status_known
    CHECK (VALUE IN ('PENDING', 'CONFIRMED', 'CANCELLED'));
ALTER DOMAIN booking.booking_version ADD CONSTRAINT booking_version_positive CHECK (VALUE >= 1);
ALTER DOMAIN booking.job_state ADD CONSTRAINT job_state_known
    CHECK (VALUE IN ('OPEN', 'ASSIGNED', 'SUPERSEDED', 'GAVE_UP', 'CANCELLED'));
ALTER DOMAIN booking.outbox_state ADD CONSTRAINT outbox_state_known
    CHECK (VALUE IN ('QUEUED', 'DONE', 'DROPPED', 'FAILED'));
