-- Kamailio's xcap table (table version 4) as its MySQL schema creates it: the xcap part of
-- presence-create.sql, verbatim, from /usr/share/kamailio/mysql/ of the Debian 12 package
-- kamailio-mysql-modules 5.6.3-2 (utils/kamctl/mysql/ in Kamailio's source).
-- No MySQL server runs in the tests: tests/e2e/xdmctl_data.py writes the dump of this table as
-- mysqldump (MariaDB 10.11) writes it, with SHOW CREATE TABLE's form of this statement.
CREATE TABLE `xcap` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `username` VARCHAR(64) NOT NULL,
    `domain` VARCHAR(64) NOT NULL,
    `doc` MEDIUMBLOB NOT NULL,
    `doc_type` INT(11) NOT NULL,
    `etag` VARCHAR(128) NOT NULL,
    `source` INT(11) NOT NULL,
    `doc_uri` VARCHAR(255) NOT NULL,
    `port` INT(11) NOT NULL,
    CONSTRAINT doc_uri_idx UNIQUE (`doc_uri`)
);

CREATE INDEX account_doc_type_idx ON xcap (`username`, `domain`, `doc_type`);
CREATE INDEX account_doc_type_uri_idx ON xcap (`username`, `domain`, `doc_type`, `doc_uri`);
CREATE INDEX account_doc_uri_idx ON xcap (`username`, `domain`, `doc_uri`);

INSERT INTO version (table_name, table_version) values ('xcap','4');
