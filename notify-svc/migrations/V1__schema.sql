COMMENT ON SCHEMA notify IS 'notify-svc: the email ledger';
