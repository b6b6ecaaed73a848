-- W3C trace context of the request that submitted each job, and of the job's latest
-- attempt, so background attempts link to the request and the work an update causes
-- links to the attempt.
ALTER TABLE assign.jobs
    ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN attempt_trace_context jsonb NOT NULL DEFAULT '{}';
