-- MySQL/MariaDB's 0005 moves its tables to a NO PAD binary collation; SQLite already compares text
-- byte for byte, trailing spaces included. Kept so that every dialect has the same versions.
SELECT 1;
