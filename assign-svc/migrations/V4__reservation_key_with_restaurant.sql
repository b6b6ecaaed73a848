-- Ready for sharding by restaurant (docs/scaling.md): on Citus, a table distributed by
-- restaurant_id may only have unique keys that include restaurant_id, and moving a shard
-- (logical replication) needs a key that identifies each row. The exclusion constraint
-- already includes `restaurant_id WITH =`; the reservations had no key at all.
--
-- Their primary key leads with booking_id, so it also answers every lookup by booking and
-- replaces the index on booking_id: a reservation costs no more index writes than before.
ALTER TABLE assign.reservations
    ADD CONSTRAINT reservations_pkey PRIMARY KEY (booking_id, table_id, restaurant_id);
DROP INDEX assign.reservations_by_booking;
