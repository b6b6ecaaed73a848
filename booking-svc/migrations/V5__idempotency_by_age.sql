-- Idempotency keys are purged once older than their retention (IDEMPOTENCY_RETENTION_S),
-- oldest first: found by age without reading the whole table.
CREATE INDEX idempotency_by_age ON booking.idempotency (created_at);
