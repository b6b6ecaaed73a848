-- The purges (platform::purge) find rows past their retention oldest first: reservations
-- and assignments by the end of their slot, finished jobs by when they finished.
CREATE INDEX reservations_by_end ON assign.reservations (upper(during));
CREATE INDEX bookings_by_end ON assign.bookings (upper(during));
CREATE INDEX jobs_finished ON assign.jobs (finished_at) WHERE state <> 'waiting';
