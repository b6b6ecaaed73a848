-- The purges (platform::purge) find finished rows past their retention oldest first:
-- each by the time it finished, among the finished rows only.
CREATE INDEX outbox_finished ON booking.outbox (finished_at) WHERE state <> 'QUEUED';
CREATE INDEX reassign_jobs_closed ON booking.reassign_jobs (closed_at) WHERE state <> 'OPEN';
CREATE INDEX release_tasks_finished ON booking.release_tasks (finished_at) WHERE state <> 'OPEN';
-- A booking past its history retention goes with its changes.
CREATE INDEX changes_by_booking ON booking.changes (booking_id);
