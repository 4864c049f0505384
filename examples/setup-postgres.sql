-- The least-privilege role the examples' listeners log in as (upstream.user = "gw_agent").
-- Run once, as a superuser, in the database the listener serves:
--   psql "host=127.0.0.1 user=postgres dbname=test" -f examples/setup-postgres.sql
-- gw_agent may read and write the tables of schema public (and create its own there), nothing more: it is
-- not a superuser and is granted none of pg_read_server_files, pg_write_server_files,
-- pg_execute_server_program, pg_signal_backend or pg_monitor, so COPY ... PROGRAM, pg_read_file, lo_import,
-- ALTER SYSTEM and SET ROLE postgres fail in the database itself even if a policy let them through.
-- Set a password (ALTER ROLE gw_agent PASSWORD '...') and put it in ORDERS_DB_PASSWORD when the server does not
-- use trust authentication.  Safe to run again.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'gw_agent') THEN
    CREATE ROLE gw_agent LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;
END
$$;

GRANT USAGE, CREATE ON SCHEMA public TO gw_agent;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gw_agent;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO gw_agent;
-- Tables and sequences the role running this script creates later stay usable through gw.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gw_agent;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO gw_agent;
