COMMENT ON SCHEMA assign IS 'assign-svc: floor plans, reservations and reassign jobs';
