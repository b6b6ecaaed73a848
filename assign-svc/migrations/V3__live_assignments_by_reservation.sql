-- PutFloorPlan finds a restaurant's live assignments through their reservations (the GiST
-- index of the exclusion constraint answers restaurant and time), so a booking's row keeps
-- only its key. Every assignment rewrites that row (version, tables, time): with no other
-- index on it, PostgreSQL updates it in place on its page (a HOT update) instead of adding
-- an entry to each of the two indexes per assignment.
DROP INDEX assign.bookings_assigned_by_restaurant;
