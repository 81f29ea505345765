/* Unit tests of the SQL dump reader (tools/xdmctl_sqldump.h): the string and blob forms of
 * mysqldump, pg_dump --inserts and SQLite .dump, statements of other tables skipped, and the
 * refusals with their line. */
#include "unit.h"
#include <sqlite3.h>
#include <string.h>

#include "xdmctl_sqldump.h"

static sqlite3 *load(const char *sql, long want_rows, char *err, size_t errlen)
{
    sqlite3 *h = NULL;
    CU_ASSERT_EQUAL_FATAL(sqlite3_open(":memory:", &h), SQLITE_OK);
    long rows = xdmctl_sqldump_load(h, sql, strlen(sql), "xcap", err, errlen);
    CU_ASSERT_EQUAL(rows, want_rows);
    return h;
}

/* The column col of the row with id as bytes into out; its length, or -1. */
static int cell(sqlite3 *h, int id, const char *col, char *out, size_t outlen)
{
    char q[128];
    snprintf(q, sizeof q, "SELECT \"%s\" FROM xcap WHERE id = %d", col, id);
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(h, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_bytes(st, 0);
        if (n > 0 && (size_t)n <= outlen)
            memcpy(out, sqlite3_column_blob(st, 0), (size_t)n);
    }
    sqlite3_finalize(st);
    return n;
}

/* The column col of the row with id holds exactly the len bytes of want (len 0: empty or NULL). */
#define CELL_IS(h, id, col, want, len)                                                             \
    do {                                                                                           \
        char cell_buf_[64];                                                                        \
        CU_ASSERT_EQUAL(cell((h), (id), (col), cell_buf_, sizeof cell_buf_), (len));               \
        if ((len) > 0)                                                                             \
            CU_ASSERT_EQUAL(memcmp(cell_buf_, (want), (len)), 0);                                  \
    } while (0)

/* The dump is refused with exactly that message. */
static void refused(const char *sql, const char *message)
{
    char err[256];
    sqlite3 *h = load(sql, -1, err, sizeof err);
    CU_ASSERT_STRING_EQUAL(err, message);
    sqlite3_close(h);
}

static void test_mysql(void)
{
    const char *sql = "-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\n"
                      "/*!40101 SET NAMES utf8mb4 */;\n"
                      "DROP TABLE IF EXISTS `version`;\n"
                      "CREATE TABLE `version` (`id` int(10), `x` text) ENGINE=MyISAM;\n"
                      "INSERT INTO `version` VALUES (1,'it''s; not ours');\n"
                      "CREATE TABLE `xcap` (\n"
                      "  `id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n"
                      "  `doc` mediumblob NOT NULL,\n"
                      "  `doc_uri` varchar(255) NOT NULL DEFAULT 'a,b)',\n"
                      "  PRIMARY KEY (`id`),\n"
                      "  UNIQUE KEY `doc_uri_idx` (`doc_uri`)\n"
                      ") ENGINE=MyISAM AUTO_INCREMENT=4 DEFAULT CHARSET=utf8mb4;\n"
                      "LOCK TABLES `xcap` WRITE;\n"
                      "INSERT INTO `xcap` VALUES (1,'a\\'b\\\\c\\n\\0\\Z\\\"','x'),"
                      "(2,0x3C612F3E,'y'),\n(3,_binary 'q''r',NULL);\n"
                      "UNLOCK TABLES;\n";
    char err[256];
    sqlite3 *h = load(sql, 3, err, sizeof err);
    CELL_IS(h, 1, "doc", "a'b\\c\n\0\x1a\"", 9);
    CELL_IS(h, 2, "doc", "<a/>", 4);
    CELL_IS(h, 3, "doc", "q'r", 3);
    CELL_IS(h, 3, "doc_uri", "", 0); /* NULL */
    sqlite3_close(h);
}

static void test_postgresql(void)
{
    const char *sql =
        "--\n-- PostgreSQL database dump\n--\n"
        "SET standard_conforming_strings = on;\n"
        "CREATE FUNCTION public.f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
        "CREATE TABLE public.xcap (\n    id integer NOT NULL,\n    doc bytea NOT NULL,\n"
        "    doc_uri character varying(255) NOT NULL\n);\n"
        "ALTER TABLE public.xcap OWNER TO kamailio;\n"
        "INSERT INTO public.xcap VALUES (1, '\\x3c612f3e', 'it''s \\x41');\n"
        "INSERT INTO public.xcap (id, doc_uri, doc) VALUES (2, E'a\\tb\\101', '\\x');\n"
        "SELECT pg_catalog.setval('public.xcap_id_seq', 2, true);\n";
    char err[256];
    sqlite3 *h = load(sql, 2, err, sizeof err);
    CELL_IS(h, 1, "doc", "<a/>", 4);
    CELL_IS(h, 1, "doc_uri", "it's \\x41", 9); /* not bytea: as written */
    CELL_IS(h, 2, "doc_uri", "a\tbA", 4);
    CELL_IS(h, 2, "doc", "", 0);
    sqlite3_close(h);
}

static void test_sqlite(void)
{
    const char *sql = "BEGIN TRANSACTION;\n"
                      "CREATE TABLE xcap (id INTEGER PRIMARY KEY, doc BLOB, doc_type INTEGER);\n"
                      "INSERT INTO \"xcap\" VALUES(1,X'3C612F3E',4);\n"
                      "INSERT INTO \"xcap\" VALUES(2,'back\\slash',-1.5e1);\n"
                      "COMMIT;\n";
    char err[256];
    sqlite3 *h = load(sql, 2, err, sizeof err);
    CELL_IS(h, 1, "doc", "<a/>", 4);
    CELL_IS(h, 2, "doc", "back\\slash", 10);
    sqlite3_close(h);
}

static void test_untyped_and_data_only(void)
{
    char err[256];
    sqlite3 *h = load("CREATE TABLE xcap (id, doc);\nINSERT INTO xcap VALUES (1, 'a');\n", 1, err,
                      sizeof err);
    CELL_IS(h, 1, "doc", "a", 1);
    sqlite3_close(h);
    /* pg_dump --data-only --column-inserts: no CREATE TABLE, so no column types */
    h = load("-- PostgreSQL database dump\n"
             "INSERT INTO public.xcap (id, doc, doc_uri) VALUES (1, '\\x3c612f3e', '\\xz');\n",
             1, err, sizeof err);
    CELL_IS(h, 1, "doc", "<a/>", 4);
    CELL_IS(h, 1, "doc_uri", "\\xz", 3); /* not hex: as written */
    sqlite3_close(h);
}

static void test_refusals(void)
{
    refused("INSERT INTO xcap VALUES (1);\n", "line 1: an INSERT into xcap without a column list "
                                              "and no CREATE TABLE for it before");
    refused("CREATE TABLE xcap (id int, doc blob);\n\nINSERT INTO xcap VALUES (1, 'a', 3);\n",
            "line 3: a row of xcap with more than its 2 columns");
    refused("CREATE TABLE xcap (id int, doc blob);\nINSERT INTO xcap VALUES (1, 'a);\n",
            "line 3: unterminated string");
    refused("-- PostgreSQL database dump\nCOPY public.other (id) FROM stdin;\n1\n\\.\n"
            "COPY public.xcap (id, doc) FROM stdin;\n1\t\\\\x00\n\\.\n",
            "line 5: the rows of xcap are in a COPY block; dump them with pg_dump --inserts (or "
            "--column-inserts)");
    refused("CREATE TABLE other (id int);\n",
            "no table xcap in the dump (neither CREATE TABLE nor INSERT)");
    char err[256];
    sqlite3 *h = load("CREATE TABLE xcap (id int);\n", 0, err, sizeof err); /* empty is fine */
    sqlite3_close(h);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"mysqldump: escapes, hex and _binary blobs, rows per INSERT", test_mysql},
        {"pg_dump --inserts: bytea hex, E'' strings, dollar quotes", test_postgresql},
        {"SQLite .dump: X'' blobs, no backslash escapes", test_sqlite},
        {"columns without a type, data-only dumps", test_untyped_and_data_only},
        {"refusals name their line", test_refusals},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"xdmctl_sqldump", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
