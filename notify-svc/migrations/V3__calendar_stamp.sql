-- The DTSTAMP of a delivery's calendar invitation, fixed when the key is first recorded.
-- Within one booking version the invitations are ordered by kind, whatever order their
-- SendOnce calls arrive in: pending < confirmed < cancelled, at least a second apart
-- (DTSTAMP has whole seconds), so a calendar applying RFC 5546 ends on the newest state.
CREATE FUNCTION notify.invitation_rank(kind text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE kind
        WHEN 'BOOKING_CANCELLED' THEN 2
        WHEN 'BOOKING_CONFIRMED' THEN 1
        WHEN 'MODIFICATION_CONFIRMED' THEN 1
        ELSE 0
    END;
COMMENT ON FUNCTION notify.invitation_rank(text) IS
    'Order of the invitations of one booking version: pending 0, confirmed 1, cancelled 2';

ALTER TABLE notify.deliveries ADD COLUMN stamp timestamptz;
UPDATE notify.deliveries SET stamp = date_trunc('second', requested_at);
ALTER TABLE notify.deliveries
    ALTER COLUMN stamp SET NOT NULL,
    ALTER COLUMN stamp SET DEFAULT date_trunc('second', now());
COMMENT ON COLUMN notify.deliveries.stamp IS
    'DTSTAMP of its invitation: ordered pending < confirmed < cancelled within one booking version';
