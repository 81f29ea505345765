-- Kamailio's xcap table (table version 4) as its MySQL schema creates it: the xcap part of
-- utils/kamctl/mysql/presence-create.sql of Kamailio 5.6, which the Debian 12 package
-- kamailio-mysql-modules installs as /usr/share/kamailio/mysql/presence-create.sql.
-- No MySQL server runs in the tests: tests/e2e/xdmctl_data.py writes the dump of this table as
-- mysqldump (MariaDB 10.11) writes it, with SHOW CREATE TABLE's form of this statement.
CREATE TABLE xcap (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    doc MEDIUMBLOB NOT NULL,
    doc_type INT(11) NOT NULL,
    etag VARCHAR(64) NOT NULL,
    source INT(11) NOT NULL,
    doc_uri VARCHAR(255) NOT NULL,
    port INT(11) NOT NULL,
    CONSTRAINT doc_uri_idx UNIQUE (doc_uri)
) ENGINE=MyISAM;

CREATE INDEX account_doc_type_idx ON xcap (username, domain, doc_type);
CREATE INDEX account_doc_type_uri_idx ON xcap (username, domain, doc_type, doc_uri);
CREATE INDEX account_doc_uri_idx ON xcap (username, domain, doc_uri);
