-- OpenXCAP's document table as its MySQL schema creates it: the subscriber and xcap tables of
-- scripts/mysql-create-tables.sql in OpenXCAP (github.com/AGProjects/openxcap). OpenXCAP's
-- database backend (xcap/backend/database.py) keeps one row per document: username and domain
-- of the XCAP user, doc_type from Storage.app_mapping (pres-rules 1<<1, resource-lists 1<<2,
-- rls-services 1<<3, pidf-manipulation 1<<4, OMA pres-rules 1<<5, OMA pres-content 1<<6,
-- dialog-rules 1<<7, test-app 0), doc_uri the document path below users/XUI/ (pres-rules are
-- always kept as "index.xml") and doc the bytes as PUT.
-- No MySQL server runs in the tests: tests/e2e/xdmctl_data.py writes the dump of this table as
-- mysqldump (MariaDB 10.11) writes it, and loads the same columns into SQLite and PostgreSQL
-- (AUTO_INCREMENT as INTEGER PRIMARY KEY / SERIAL, BLOB as BYTEA) for the other two forms.
CREATE TABLE subscriber (
    id INTEGER NOT NULL AUTO_INCREMENT,
    username VARCHAR(64),
    domain VARCHAR(64),
    password VARCHAR(255),
    ha1 VARCHAR(64),
    PRIMARY KEY (id)
);

CREATE TABLE xcap (
    id INTEGER NOT NULL AUTO_INCREMENT,
    subscriber_id INTEGER,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    doc BLOB NOT NULL,
    doc_type INTEGER NOT NULL,
    etag VARCHAR(64) NOT NULL,
    source INTEGER NOT NULL,
    doc_uri VARCHAR(255) NOT NULL,
    port INTEGER NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(subscriber_id) REFERENCES subscriber (id) ON DELETE CASCADE,
    CONSTRAINT account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri)
);

CREATE INDEX source_idx ON xcap (source);
CREATE INDEX xcap_subscriber_id_exists ON xcap (subscriber_id);
