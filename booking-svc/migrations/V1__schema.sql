COMMENT ON SCHEMA booking IS 'booking-svc: bookings, history, outbox and reassign jobs';
