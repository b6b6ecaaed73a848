-- Restaurant profiles: the name, time zone, address and phone that guests' emails show.
-- A restaurant without a row keeps working: its emails show its id as name, in UTC.
CREATE TABLE booking.restaurants (
    id         text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- An IANA zone name as the service's tz database spells it (checked by the service).
    time_zone  text NOT NULL,
    address    text NOT NULL DEFAULT '' CHECK (char_length(address) <= 500),
    phone      text NOT NULL DEFAULT '' CHECK (char_length(phone) <= 40),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE booking.restaurants IS
    'Restaurant profiles, read by the statement that queues an email: a queued email keeps the profile of that moment';

-- What the current version changed from: a modification email shows old and new. Set by
-- every edit that makes a new version; NULL for a version 1 (and for versions written
-- before this migration, whose emails show the new values only).
ALTER TABLE booking.bookings
    ADD COLUMN previous_start_time timestamptz,
    ADD COLUMN previous_party_size integer;
