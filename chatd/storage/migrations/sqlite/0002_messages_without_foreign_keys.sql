-- Kept in step with the PostgreSQL schema's version numbers. SQLite cannot
-- drop a foreign key without rebuilding the table, and its checks cost
-- little in-process, so this version changes nothing here.

SELECT 1;
