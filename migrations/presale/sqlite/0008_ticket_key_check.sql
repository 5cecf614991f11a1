-- PostgreSQL's 0008 drops the tickets' foreign key to the license (a row lock per ticket
-- on the license's row). SQLite's is left: SQLite checks it without a lock of its own
-- (one writer at a time), and dropping a constraint there means rebuilding the table.
-- This migration exists so that both engines count the same versions.
SELECT 1;
