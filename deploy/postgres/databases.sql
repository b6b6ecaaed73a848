-- A database per service in the one PostgreSQL of docker compose (run once, when the data
-- volume is first initialised): each service migrates its own schema in its own database.
CREATE DATABASE booking;
CREATE DATABASE assign;
CREATE DATABASE notify;
