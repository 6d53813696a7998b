ALTER TABLE documents DROP COLUMN access_version;
