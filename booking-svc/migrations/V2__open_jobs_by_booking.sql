-- A booking's open job (at most one) is found without reading its closed ones: superseding
-- it on an edit, and closing it on a cancel, stay constant-time however often the booking
-- was edited.
CREATE INDEX reassign_jobs_open_by_booking ON booking.reassign_jobs (booking_id) WHERE state = 'OPEN';
