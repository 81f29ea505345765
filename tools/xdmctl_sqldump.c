/* One table out of an SQL text dump (xdmctl_sqldump.h). A small scanner rather than running the
 * dump: MySQL and PostgreSQL dumps carry statements SQLite refuses (LOCK TABLES, ENGINE=,
 * SET ..., ALTER ... OWNER TO) and string rules it does not share (MySQL's backslash escapes,
 * PostgreSQL's bytea hex form). */
#include "xdmctl_sqldump.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xcap_uri.h"

enum sqldump_dialect { SQLDUMP_STANDARD, SQLDUMP_MYSQL, SQLDUMP_POSTGRESQL };

struct sqldump {
    const char *start, *p, *end;
    enum sqldump_dialect dialect;
    const char *table;
    sqlite3 *h;
    bool created;
    bool types_unknown; /* the table came from an INSERT's column list: no column types */
    size_t ncols;
    char cols[XDMCTL_SQLDUMP_COLUMNS_MAX][XDMCTL_SQLDUMP_NAME_MAX];
    bool bytea[XDMCTL_SQLDUMP_COLUMNS_MAX];
    char *err;
    size_t errlen;
    /* The bytes of the string literal read last (grown as needed; freed at the end). */
    char *buf;
    size_t len, cap;
};

/* Records the first error with the line of the scanner's position; returns -1. */
__attribute__((format(printf, 2, 3))) static int sqldump_fail(struct sqldump *d, const char *fmt,
                                                              ...)
{
    unsigned line = 1;
    for (const char *q = d->start; q < d->p && q < d->end; q++)
        line += *q == '\n';
    int n = snprintf(d->err, d->errlen, "line %u: ", line);
    if (n >= 0 && (size_t)n < d->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err + n, d->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int sqldump_put(struct sqldump *d, char c)
{
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        char *b = realloc(d->buf, cap);
        if (!b)
            return sqldump_fail(d, "out of memory");
        d->buf = b;
        d->cap = cap;
    }
    d->buf[d->len++] = c;
    return 0;
}

/* Skips white space and comments: "-- ..." (and MySQL's "# ..."), C-style blocks, including
 * MySQL's versioned "/" "*!40101 ... *" "/" ones, whose content is for MySQL only. */
static void sqldump_skip_space(struct sqldump *d)
{
    while (d->p < d->end) {
        if (isspace((unsigned char)*d->p)) {
            d->p++;
        } else if ((d->end - d->p >= 2 && d->p[0] == '-' && d->p[1] == '-') ||
                   (*d->p == '#' && d->dialect == SQLDUMP_MYSQL)) {
            while (d->p < d->end && *d->p != '\n')
                d->p++;
        } else if (d->end - d->p >= 2 && d->p[0] == '/' && d->p[1] == '*') {
            const char *q = d->p + 2;
            while (q + 1 < d->end && !(q[0] == '*' && q[1] == '/'))
                q++;
            d->p = q + 1 < d->end ? q + 2 : d->end;
        } else {
            return;
        }
    }
}

/* Consumes the keyword kw (case-insensitive, a whole word) after space; false when not there. */
static bool sqldump_keyword(struct sqldump *d, const char *kw)
{
    sqldump_skip_space(d);
    size_t n = strlen(kw);
    if ((size_t)(d->end - d->p) < n || strncasecmp(d->p, kw, n) != 0)
        return false;
    if (d->p + n < d->end && (isalnum((unsigned char)d->p[n]) || d->p[n] == '_'))
        return false;
    d->p += n;
    return true;
}

static bool sqldump_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/* One identifier: bare, "quoted" or `backquoted` (a doubled quote stands for itself), into out.
 * Returns 1 when it was quoted, 0 when bare, -1 when there is none or it is too long. */
static int sqldump_ident(struct sqldump *d, char out[XDMCTL_SQLDUMP_NAME_MAX])
{
    sqldump_skip_space(d);
    size_t n = 0;
    if (d->p < d->end && (*d->p == '"' || *d->p == '`')) {
        char q = *d->p++;
        for (;;) {
            if (d->p >= d->end)
                return sqldump_fail(d, "unterminated quoted name");
            if (*d->p == q && !(d->p + 1 < d->end && d->p[1] == q))
                break;
            if (*d->p == q)
                d->p++;
            if (n + 1 >= XDMCTL_SQLDUMP_NAME_MAX)
                return sqldump_fail(d, "a name longer than %d bytes", XDMCTL_SQLDUMP_NAME_MAX - 1);
            out[n++] = *d->p++;
        }
        d->p++;
        out[n] = '\0';
        return 1;
    }
    while (d->p < d->end && sqldump_word_char(*d->p)) {
        if (n + 1 >= XDMCTL_SQLDUMP_NAME_MAX)
            return sqldump_fail(d, "a name longer than %d bytes", XDMCTL_SQLDUMP_NAME_MAX - 1);
        out[n++] = *d->p++;
    }
    out[n] = '\0';
    return n ? 0 : sqldump_fail(d, "a name expected");
}

/* A possibly qualified name (schema.table, `db`.`table`): its last part into out. */
static int sqldump_name(struct sqldump *d, char out[XDMCTL_SQLDUMP_NAME_MAX])
{
    for (;;) {
        if (sqldump_ident(d, out) < 0)
            return -1;
        sqldump_skip_space(d);
        if (d->p >= d->end || *d->p != '.')
            return 0;
        d->p++;
    }
}

/* Skips a string literal starting at the quote d->p points to, as the dialect writes it. */
static int sqldump_skip_quoted(struct sqldump *d, bool backslash)
{
    char q = *d->p++;
    while (d->p < d->end) {
        if (backslash && *d->p == '\\' && d->p + 1 < d->end) {
            d->p += 2;
        } else if (*d->p == q) {
            d->p++;
            if (d->p < d->end && *d->p == q)
                d->p++;
            else
                return 0;
        } else {
            d->p++;
        }
    }
    return sqldump_fail(d, "unterminated string or quoted name");
}

/* PostgreSQL's $tag$ ... $tag$ (function bodies); d->p at the first '$'. */
static int sqldump_skip_dollar(struct sqldump *d)
{
    const char *q = d->p + 1;
    while (q < d->end && (isalnum((unsigned char)*q) || *q == '_'))
        q++;
    if (q >= d->end || *q != '$') {
        d->p++;
        return 0;
    }
    size_t taglen = (size_t)(q - d->p) + 1;
    const char *tag = d->p;
    for (q++; q + taglen <= d->end; q++)
        if (memcmp(q, tag, taglen) == 0) {
            d->p = q + taglen;
            return 0;
        }
    return sqldump_fail(d, "unterminated dollar-quoted string");
}

/* Moves past the ';' ending the current statement (or to the end of the dump). With stop set,
 * stops before a ',' or ')' at parenthesis depth 0 instead. */
static int sqldump_skip_to(struct sqldump *d, bool stop)
{
    int depth = 0;
    while (d->p < d->end) {
        sqldump_skip_space(d);
        if (d->p >= d->end)
            break;
        char c = *d->p;
        if (c == '\'' || c == '"' || c == '`') {
            bool bs = c == '\'' && (d->dialect == SQLDUMP_MYSQL ||
                                    (d->p > d->start && (d->p[-1] == 'E' || d->p[-1] == 'e')));
            if (sqldump_skip_quoted(d, bs) < 0)
                return -1;
            continue;
        }
        if (c == '$' && d->dialect == SQLDUMP_POSTGRESQL) {
            if (sqldump_skip_dollar(d) < 0)
                return -1;
            continue;
        }
        if (stop && depth == 0 && (c == ',' || c == ')'))
            return 0;
        if (c == '(')
            depth++;
        else if (c == ')')
            depth--;
        d->p++;
        if (c == ';' && !stop)
            return 0;
    }
    return stop ? sqldump_fail(d, "unterminated statement") : 0;
}

/* Reads a string literal at d->p (the opening quote) into d->buf, escapes undone: '' always,
 * backslash escapes when mysql_escapes (MySQL) or pg_escapes (PostgreSQL E'...'). */
static int sqldump_string(struct sqldump *d, bool mysql_escapes, bool pg_escapes)
{
    d->len = 0;
    d->p++;
    for (;;) {
        if (d->p >= d->end)
            return sqldump_fail(d, "unterminated string");
        char c = *d->p++;
        if (c == '\'') {
            if (d->p < d->end && *d->p == '\'') {
                d->p++;
            } else {
                return 0;
            }
        } else if (c == '\\' && (mysql_escapes || pg_escapes) && d->p < d->end) {
            char e = *d->p++;
            switch (e) {
            case '0':
            case '1':
            case '2':
            case '3':
            case '4':
            case '5':
            case '6':
            case '7':
                if (pg_escapes) { /* PostgreSQL: up to three octal digits */
                    int v = e - '0';
                    for (int i = 0; i < 2 && d->p < d->end && *d->p >= '0' && *d->p <= '7'; i++)
                        v = v * 8 + (*d->p++ - '0');
                    c = (char)v;
                } else {
                    c = e == '0' ? '\0' : e;
                }
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = pg_escapes ? '\f' : 'f';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'Z':
                c = mysql_escapes ? '\x1a' : 'Z';
                break;
            case 'x':
                if (pg_escapes && d->p < d->end && xcap_uri_hex(*d->p) >= 0) {
                    int v = xcap_uri_hex(*d->p++);
                    if (d->p < d->end && xcap_uri_hex(*d->p) >= 0)
                        v = v * 16 + xcap_uri_hex(*d->p++);
                    c = (char)v;
                } else {
                    c = e;
                }
                break;
            case '%':
            case '_':
                /* MySQL keeps the backslash of \% and \_ (they matter to LIKE only). */
                if (mysql_escapes && sqldump_put(d, '\\') < 0)
                    return -1;
                c = e;
                break;
            default:
                c = e;
                break;
            }
        }
        if (sqldump_put(d, c) < 0)
            return -1;
    }
}

static bool sqldump_all_hex(const char *p, size_t n)
{
    if (n % 2)
        return false;
    for (size_t i = 0; i < n; i++)
        if (xcap_uri_hex(p[i]) < 0)
            return false;
    return true;
}

/* d->buf holds hex digits (after a "\x" prefix already removed, or X'...'): decodes in place. */
static int sqldump_unhex(struct sqldump *d, size_t from)
{
    size_t n = d->len - from;
    if (n % 2)
        return sqldump_fail(d, "a hexadecimal blob with an odd number of digits");
    for (size_t i = 0; i < n / 2; i++) {
        int hi = xcap_uri_hex(d->buf[from + 2 * i]), lo = xcap_uri_hex(d->buf[from + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return sqldump_fail(d, "a hexadecimal blob with a character that is no digit");
        d->buf[i] = (char)(hi * 16 + lo);
    }
    d->len = n / 2;
    return 0;
}

/* Reads one value and binds it as parameter idx (1-based) of st; col < 0 when not known. */
/* A number at d->p bound to parameter idx (an integer, or a real with '.' or an exponent): the
 * result of the bind, or -1 for no number (reported). */
static int sqldump_number(struct sqldump *d, sqlite3_stmt *st, int idx)
{
    int rc;
    const char *v = d->p, *q = v + 1;
    bool real = *v == '.';
    while (q < d->end && (isalnum((unsigned char)*q) || *q == '.' ||
                          ((*q == '-' || *q == '+') && (q[-1] == 'e' || q[-1] == 'E')))) {
        real = real || *q == '.' || *q == 'e' || *q == 'E';
        q++;
    }
    char num[64];
    if ((size_t)(q - v) >= sizeof num)
        return sqldump_fail(d, "a number of more than %zu characters", sizeof num - 1);
    memcpy(num, v, (size_t)(q - v));
    num[q - v] = '\0';
    char *endp;
    if (real) {
        double x = strtod(num, &endp);
        rc = *endp ? SQLITE_MISMATCH : sqlite3_bind_double(st, idx, x);
    } else {
        long long x = strtoll(num, &endp, 10);
        rc = *endp ? SQLITE_MISMATCH : sqlite3_bind_int64(st, idx, x);
    }
    if (rc == SQLITE_MISMATCH)
        return sqldump_fail(d, "not a number: %s", num);
    d->p = q;
    return rc;
}

static int sqldump_value(struct sqldump *d, sqlite3_stmt *st, int idx, int col)
{
    sqldump_skip_space(d);
    if (d->p >= d->end)
        return sqldump_fail(d, "a value expected");
    const char *v = d->p;
    int rc = SQLITE_OK;
    bool blob = false;
    if (sqldump_keyword(d, "NULL")) {
        rc = sqlite3_bind_null(st, idx);
    } else if ((*v == 'X' || *v == 'x') && d->end - v > 1 && v[1] == '\'') {
        d->p++;
        if (sqldump_string(d, false, false) < 0 || sqldump_unhex(d, 0) < 0)
            return -1;
        blob = true;
    } else if (*v == '0' && d->end - v > 2 && (v[1] == 'x' || v[1] == 'X') &&
               d->dialect == SQLDUMP_MYSQL) {
        d->p += 2;
        d->len = 0;
        while (d->p < d->end && xcap_uri_hex(*d->p) >= 0)
            if (sqldump_put(d, *d->p++) < 0)
                return -1;
        if (sqldump_unhex(d, 0) < 0)
            return -1;
        blob = true;
    } else if ((*v == 'E' || *v == 'e') && d->end - v > 1 && v[1] == '\'') {
        d->p++;
        if (sqldump_string(d, false, true) < 0)
            return -1;
        blob = true;
    } else if (*v == '_' && d->dialect == SQLDUMP_MYSQL) {
        /* A character set introducer (_binary '...', _utf8mb4 '...'): the bytes as written. */
        while (d->p < d->end && sqldump_word_char(*d->p))
            d->p++;
        sqldump_skip_space(d);
        if (d->p >= d->end || *d->p != '\'')
            return sqldump_fail(d, "a string expected after a character set introducer");
        if (sqldump_string(d, true, false) < 0)
            return -1;
        blob = true;
    } else if (*v == '\'') {
        if (sqldump_string(d, d->dialect == SQLDUMP_MYSQL, false) < 0)
            return -1;
        blob = true;
        /* PostgreSQL's bytea output (hex format, the default since 9.0): '\x3c3f...'. Without
         * column types (a data-only dump) a string that is wholly of that form is taken as one. */
        if (d->dialect == SQLDUMP_POSTGRESQL && col >= 0 && d->len >= 2 && d->buf[0] == '\\' &&
            d->buf[1] == 'x' &&
            (d->bytea[col] || (d->types_unknown && sqldump_all_hex(d->buf + 2, d->len - 2))) &&
            sqldump_unhex(d, 2) < 0)
            return -1;
    } else if (*v == '-' || *v == '+' || *v == '.' || isdigit((unsigned char)*v)) {
        if ((rc = sqldump_number(d, st, idx)) < 0)
            return -1;
    } else if (sqldump_word_char(*v)) {
        /* TRUE, FALSE, DEFAULT ...: kept as the word. */
        while (d->p < d->end && sqldump_word_char(*d->p))
            d->p++;
        rc = sqlite3_bind_text(st, idx, v, (int)(d->p - v), SQLITE_TRANSIENT);
    } else {
        return sqldump_fail(d, "a value expected");
    }
    if (blob) {
        if (d->len > (size_t)0x7fffffff)
            return sqldump_fail(d, "a value larger than 2 GiB");
        rc = sqlite3_bind_blob(st, idx, d->len ? d->buf : "", (int)d->len, SQLITE_TRANSIENT);
    }
    if (rc != SQLITE_OK)
        return sqldump_fail(d, "%s", sqlite3_errstr(rc));
    /* A PostgreSQL cast ('...'::bytea) changes nothing here. */
    sqldump_skip_space(d);
    if (d->end - d->p >= 2 && d->p[0] == ':' && d->p[1] == ':')
        return sqldump_skip_to(d, true);
    return 0;
}

/* Appends "name" (quotes doubled) to sql; -1 when it does not fit. */
static int sqldump_quote(char *sql, size_t size, const char *name)
{
    size_t n = strlen(sql);
    if (n + 1 >= size)
        return -1;
    sql[n++] = '"';
    for (; *name; name++) {
        if (n + 3 >= size)
            return -1;
        if (*name == '"')
            sql[n++] = '"';
        sql[n++] = *name;
    }
    sql[n++] = '"';
    sql[n] = '\0';
    return 0;
}

enum { SQLDUMP_SQL_MAX = XDMCTL_SQLDUMP_COLUMNS_MAX * (2 * XDMCTL_SQLDUMP_NAME_MAX + 8) + 512 };

/* CREATE TABLE "table" ("c1", ...) in d->h, once, from d->cols. */
static int sqldump_create(struct sqldump *d)
{
    char sql[SQLDUMP_SQL_MAX] = "CREATE TABLE ";
    if (sqldump_quote(sql, sizeof sql, d->table) < 0)
        return sqldump_fail(d, "the table name is too long");
    strcat(sql, " (");
    for (size_t i = 0; i < d->ncols; i++) {
        if (i)
            strcat(sql, ", ");
        if (sqldump_quote(sql, sizeof sql - 2, d->cols[i]) < 0)
            return sqldump_fail(d, "too long a column list");
    }
    strcat(sql, ")");
    char *msg = NULL;
    if (sqlite3_exec(d->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sqldump_fail(d, "cannot create the table %s: %s", d->table, msg ? msg : "");
        sqlite3_free(msg);
        return -1;
    }
    d->created = true;
    return 0;
}

static bool sqldump_is_constraint(const char *w)
{
    static const char *const kws[] = {"PRIMARY",    "UNIQUE",  "KEY",   "INDEX",
                                      "CONSTRAINT", "FOREIGN", "CHECK", "FULLTEXT",
                                      "SPATIAL",    "EXCLUDE", "LIKE",  "PERIOD"};
    for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++)
        if (strcasecmp(w, kws[i]) == 0)
            return true;
    return false;
}

/* The column list of CREATE TABLE <our table> ( ... ); d->p after the name. */
static int sqldump_create_table(struct sqldump *d)
{
    sqldump_skip_space(d);
    if (d->p >= d->end || *d->p != '(')
        return sqldump_skip_to(d, false); /* CREATE TABLE ... AS SELECT: no rows from it */
    d->p++;
    size_t n = 0;
    for (;;) {
        char word[XDMCTL_SQLDUMP_NAME_MAX];
        int quoted = sqldump_ident(d, word);
        if (quoted < 0)
            return -1;
        if (quoted || !sqldump_is_constraint(word)) {
            if (n == XDMCTL_SQLDUMP_COLUMNS_MAX)
                return sqldump_fail(d, "table %s has more than %d columns", d->table,
                                    XDMCTL_SQLDUMP_COLUMNS_MAX);
            memcpy(d->cols[n], word, sizeof word);
            char type[XDMCTL_SQLDUMP_NAME_MAX];
            sqldump_skip_space(d);
            /* SQLite allows a column without a type: "CREATE TABLE t (a, b)". */
            bool typed = d->p < d->end && *d->p != ',' && *d->p != ')';
            d->bytea[n] = typed && sqldump_ident(d, type) == 0 && strcasecmp(type, "bytea") == 0;
            n++;
        }
        if (sqldump_skip_to(d, true) < 0)
            return -1;
        if (*d->p++ == ')')
            break;
    }
    if (!d->created) {
        d->ncols = n;
        if (sqldump_create(d) < 0)
            return -1;
    }
    return sqldump_skip_to(d, false);
}

/* The column list of an INSERT (or, without one, the table's columns) into names, *n of them. A
 * data-only dump creates the table from the first list. 0 or -1. */
static int sqldump_insert_columns(struct sqldump *d,
                                  char names[XDMCTL_SQLDUMP_COLUMNS_MAX][XDMCTL_SQLDUMP_NAME_MAX],
                                  size_t *n)
{
    *n = 0;
    sqldump_skip_space(d);
    if (d->p < d->end && *d->p == '(') {
        d->p++;
        for (;;) {
            if (*n == XDMCTL_SQLDUMP_COLUMNS_MAX)
                return sqldump_fail(d, "an INSERT with more than %d columns",
                                    XDMCTL_SQLDUMP_COLUMNS_MAX);
            if (sqldump_ident(d, names[*n]) < 0)
                return -1;
            (*n)++;
            sqldump_skip_space(d);
            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }
            if (d->p < d->end && *d->p == ')') {
                d->p++;
                break;
            }
            return sqldump_fail(d, "a column list expected");
        }
        if (!d->created) { /* a data-only dump: the first column list defines the table */
            memcpy(d->cols, names, sizeof names[0] * *n);
            d->ncols = *n;
            d->types_unknown = true;
            if (sqldump_create(d) < 0)
                return -1;
        }
    } else {
        if (!d->created)
            return sqldump_fail(d,
                                "an INSERT into %s without a column list and no CREATE TABLE "
                                "for it before",
                                d->table);
        memcpy(names, d->cols, sizeof names[0] * d->ncols);
        *n = d->ncols;
    }
    return 0;
}

/* The statement inserting one row of the n columns names into our table: 0 with *st, or -1. */
static int sqldump_insert_prepare(struct sqldump *d,
                                  char names[XDMCTL_SQLDUMP_COLUMNS_MAX][XDMCTL_SQLDUMP_NAME_MAX],
                                  size_t n, sqlite3_stmt **st)
{
    char sql[SQLDUMP_SQL_MAX] = "INSERT INTO ";
    if (sqldump_quote(sql, sizeof sql, d->table) < 0)
        return sqldump_fail(d, "the table name is too long");
    strcat(sql, " (");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(sql, ", ");
        if (sqldump_quote(sql, sizeof sql - 2 * n - 16, names[i]) < 0)
            return sqldump_fail(d, "too long a column list");
    }
    strcat(sql, ") VALUES (");
    for (size_t i = 0; i < n; i++)
        strcat(sql, i ? ",?" : "?");
    strcat(sql, ")");
    *st = NULL;
    if (sqlite3_prepare_v2(d->h, sql, -1, st, NULL) != SQLITE_OK)
        return sqldump_fail(d, "%s", sqlite3_errmsg(d->h));
    return 0;
}

/* One row "(v, ...)" of n values bound to st (map: the table column of each) and inserted. 0 or
 * -1. */
static int sqldump_insert_row(struct sqldump *d, sqlite3_stmt *st, size_t n, const int *map)
{
    sqldump_skip_space(d);
    if (d->p >= d->end || *d->p != '(')
        return sqldump_fail(d, "a row '(' expected");
    d->p++;
    size_t i = 0;
    for (;;) {
        if (i == n)
            return sqldump_fail(d, "a row of %s with more than its %zu columns", d->table, n);
        if (sqldump_value(d, st, (int)i + 1, map[i]) < 0)
            return -1;
        i++;
        sqldump_skip_space(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ')') {
            d->p++;
            break;
        }
        return sqldump_fail(d, "',' or ')' expected in a row");
    }
    if (i != n)
        return sqldump_fail(d, "a row of %s with %zu values for %zu columns", d->table, i, n);
    if (sqlite3_step(st) != SQLITE_DONE)
        return sqldump_fail(d, "%s", sqlite3_errmsg(d->h));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return 0;
}

/* INSERT INTO <our table> [(cols)] VALUES (...)[, (...)]...; d->p after the name. Returns the
 * rows inserted or -1. */
static long sqldump_insert(struct sqldump *d)
{
    char names[XDMCTL_SQLDUMP_COLUMNS_MAX][XDMCTL_SQLDUMP_NAME_MAX];
    int map[XDMCTL_SQLDUMP_COLUMNS_MAX];
    size_t n = 0;
    if (sqldump_insert_columns(d, names, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        map[i] = -1;
        for (size_t j = 0; j < d->ncols; j++)
            if (strcmp(names[i], d->cols[j]) == 0)
                map[i] = (int)j;
    }
    if (!sqldump_keyword(d, "VALUES"))
        return sqldump_fail(d, "an INSERT into %s without VALUES", d->table);
    sqlite3_stmt *st;
    if (sqldump_insert_prepare(d, names, n, &st) < 0)
        return -1;
    long rows = 0;
    for (;;) {
        if (sqldump_insert_row(d, st, n, map) < 0) {
            sqlite3_finalize(st);
            return -1;
        }
        rows++;
        sqldump_skip_space(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        break;
    }
    sqlite3_finalize(st);
    return sqldump_skip_to(d, false) < 0 ? -1 : rows;
}

/* COPY name ... FROM stdin; its data lines end at a line "\.". */
static int sqldump_copy(struct sqldump *d, bool ours)
{
    if (ours)
        return sqldump_fail(d,
                            "the rows of %s are in a COPY block; dump them with pg_dump "
                            "--inserts (or --column-inserts)",
                            d->table);
    const char *stmt = d->p;
    if (sqldump_skip_to(d, false) < 0)
        return -1;
    bool from_stdin = false;
    for (const char *q = stmt; q + 5 <= d->p; q++)
        from_stdin = from_stdin || strncasecmp(q, "stdin", 5) == 0;
    if (!from_stdin)
        return 0;
    while (d->p < d->end) {
        const char *nl = memchr(d->p, '\n', (size_t)(d->end - d->p));
        const char *eol = nl ? nl : d->end;
        bool last = eol - d->p >= 2 && d->p[0] == '\\' && d->p[1] == '.';
        d->p = nl ? nl + 1 : d->end;
        if (last)
            return 0;
    }
    return sqldump_fail(d, "a COPY block without its closing \\.");
}

long xdmctl_sqldump_load(sqlite3 *h, const char *sql, size_t len, const char *table, char *err,
                         size_t errlen)
{
    struct sqldump d = {.start = sql,
                        .p = sql,
                        .end = sql + len,
                        .table = table,
                        .h = h,
                        .err = err,
                        .errlen = errlen};
    if (errlen)
        err[0] = '\0';
    /* The tools name themselves in their first lines; mysqldump also quotes names with '`'. */
    size_t head = len < 4096 ? len : 4096;
    if (memmem(sql, head, "MySQL dump", 10) || memmem(sql, head, "MariaDB dump", 12) ||
        memmem(sql, len, "INSERT INTO `", 13))
        d.dialect = SQLDUMP_MYSQL;
    else if (memmem(sql, head, "PostgreSQL database dump", 24) ||
             memmem(sql, head, "standard_conforming_strings", 27))
        d.dialect = SQLDUMP_POSTGRESQL;
    long rows = 0;
    char name[XDMCTL_SQLDUMP_NAME_MAX];
    int rc = 0;
    while (rc == 0) {
        sqldump_skip_space(&d);
        if (d.p >= d.end)
            break;
        if (sqldump_keyword(&d, "CREATE")) {
            if (!sqldump_keyword(&d, "TEMPORARY"))
                sqldump_keyword(&d, "UNLOGGED");
            if (!sqldump_keyword(&d, "TABLE")) {
                rc = sqldump_skip_to(&d, false);
                continue;
            }
            if (sqldump_keyword(&d, "IF")) {
                sqldump_keyword(&d, "NOT");
                sqldump_keyword(&d, "EXISTS");
            }
            if (sqldump_name(&d, name) < 0)
                rc = -1;
            else
                rc = strcmp(name, table) == 0 ? sqldump_create_table(&d)
                                              : sqldump_skip_to(&d, false);
        } else if (sqldump_keyword(&d, "INSERT")) {
            sqldump_keyword(&d, "IGNORE");
            if (!sqldump_keyword(&d, "INTO") || sqldump_name(&d, name) < 0) {
                rc = sqldump_fail(&d, "INSERT INTO name expected");
            } else if (strcmp(name, table) == 0) {
                long n = sqldump_insert(&d);
                rc = n < 0 ? -1 : 0;
                rows += n < 0 ? 0 : n;
            } else {
                rc = sqldump_skip_to(&d, false);
            }
        } else if (sqldump_keyword(&d, "COPY")) {
            if (sqldump_name(&d, name) < 0)
                rc = -1;
            else
                rc = sqldump_copy(&d, strcmp(name, table) == 0);
        } else {
            rc = sqldump_skip_to(&d, false);
        }
    }
    free(d.buf);
    if (rc < 0)
        return -1;
    if (!d.created) {
        snprintf(err, errlen, "no table %s in the dump (neither CREATE TABLE nor INSERT)", table);
        return -1;
    }
    return rows;
}
