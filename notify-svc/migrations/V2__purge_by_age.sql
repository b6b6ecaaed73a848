-- The purge (platform::purge) removes final deliveries past their retention, oldest first.
CREATE INDEX deliveries_final_by_request ON notify.deliveries (requested_at) WHERE state <> 'QUEUED';
COMMENT ON TABLE notify.deliveries IS
    'The email ledger: one row per (booking_id, kind, version), kept DELIVERY_RETENTION_S after its first SendOnce once final';
