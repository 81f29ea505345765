/* Reading one table out of an SQL text dump, for xdmctl import --from (xdmctl_migrate.c).
 *
 * Understood: the dumps of MySQL/MariaDB `mysqldump` (backquoted names, backslash escapes in
 * strings, `_binary '...'` and `0x...` blobs, several rows per INSERT, versioned comments),
 * PostgreSQL `pg_dump --inserts` and `--column-inserts` (schema-qualified names, '' doubling,
 * E'...' strings, bytea in hex output format '\x...'), and SQLite `.dump` (X'...' blobs). Only
 * CREATE TABLE and INSERT statements of the named table are read; every other statement is
 * skipped whole (strings, quoted names, comments and PostgreSQL dollar quoting respected). A
 * COPY block (pg_dump without --inserts) is refused with a message saying so.
 */
#ifndef XDM_XDMCTL_SQLDUMP_H
#define XDM_XDMCTL_SQLDUMP_H

#include <sqlite3.h>
#include <stddef.h>

#define XDMCTL_SQLDUMP_COLUMNS_MAX 64
#define XDMCTL_SQLDUMP_NAME_MAX 128

/* Creates the table `table` in h (an empty SQLite database; the caller owns it) with the columns
 * that the dump's CREATE TABLE statement for it names, untyped, and inserts every row of the
 * dump's INSERT statements for it: a number as an integer or real, NULL as NULL, any string or
 * blob literal as a blob of its exact bytes (escapes undone; PostgreSQL bytea hex decoded when
 * the column is declared bytea). The table name is compared with the last part of a qualified
 * name, after unquoting. sql need not be NUL-terminated (len bytes). Returns the number of rows
 * loaded, or -1 with the reason (and the line) in err: no CREATE TABLE before an INSERT without
 * a column list, an INSERT with another number of values than columns, an unterminated string or
 * statement, more than XDMCTL_SQLDUMP_COLUMNS_MAX columns, a COPY block for the table. */
long xdmctl_sqldump_load(sqlite3 *h, const char *sql, size_t len, const char *table, char *err,
                         size_t errlen);

#endif
