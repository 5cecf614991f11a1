-- PostgreSQL guards what the service's own role may change (see the PostgreSQL
-- migration of the same number). SQLite is a file with no roles: whoever can write the
-- file is its owner, so a deployment on SQLite trusts its host, and the README says so.
SELECT 1;
