/* common/config.c: section priority, overrides, repeated keys, typed getters, host:port, file
 * errors, and the strict checks against the key table (unknown keys and sections, values out of
 * range, duplicates, indented lines, long lines, with file and line). Files are written to a
 * private temporary directory. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

/* Directory made by the suite's init; a path, not mutable state shared between threads. */
static char config_dir[64];

static int config_suite_init(void)
{
    snprintf(config_dir, sizeof config_dir, "/tmp/xdm-test-config-XXXXXX");
    return mkdtemp(config_dir) ? 0 : -1;
}

static void config_file_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", config_dir, name);
}

static int config_suite_cleanup(void)
{
    static const char *const names[] = {"a.ini",      "b.ini",      "bad.ini",  "each.ini",
                                        "badsec.ini", "strict.ini", "where.ini"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        config_file_path(names[i], path, sizeof path);
        unlink(path);
    }
    return rmdir(config_dir) == 0 ? 0 : -1;
}

/* Writes text to name in the suite directory; returns the full path in path. */
static void config_write(const char *name, const char *text, char *path, size_t len)
{
    config_file_path(name, path, len);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fputs(text, f) >= 0, 1);
    fclose(f);
}

/* The keys the tests use, one of each type. */
static const struct config_key test_keys[] = {
    {"http", CONFIG_HOSTPORT, 0, 0, NULL, "http", 0, NULL, "listener"},
    {"log_level", CONFIG_ENUM, 0, 0, "info", "log-level", 0, "error|warn|info|debug", "verbosity"},
    {"only_presence", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "a key"},
    {"only_a", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "a key"},
    {"k", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "a key"},
    {"x", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "a key"},
    {"other", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "a key"},
    {"realm", CONFIG_STR, 0, 8, "example", NULL, 0, NULL, "at most 8 characters"},
    {"empty", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "a key"},
    {"max_body", CONFIG_SIZE, 1, 1ull << 32, "1M", NULL, 0, NULL, "a size"},
    {"s", CONFIG_SIZE, 0, UINT64_MAX, NULL, NULL, 0, NULL, "any size"},
    {"n", CONFIG_UINT, 0, UINT64_MAX, NULL, NULL, 0, NULL, "any integer"},
    {"threads", CONFIG_UINT, 1, 64, "4", NULL, 0, NULL, "1..64"},
    {"b", CONFIG_BOOL, 0, 0, NULL, NULL, 0, NULL, "a boolean"},
    {"gzip", CONFIG_BOOL, 0, 0, "true", NULL, 0, NULL, "a boolean"},
    {"listen", CONFIG_HOSTPORT, 0, 0, NULL, NULL, CONFIG_OFF, NULL, "HOST:PORT or off"},
    {"peer", CONFIG_ADDR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL, "numeric address"},
    {"cert", CONFIG_FILE, 0, 0, NULL, NULL, 0, NULL, "a readable file"},
    {"trusted_peer", CONFIG_STR, 0, 0, NULL, NULL, CONFIG_REPEAT, NULL, "repeatable"},
    {0},
};

static struct config *config_two_sections(void)
{
    static const char *const sections[] = {"xdms", "presence", NULL};
    struct config *cfg = config_new(sections, test_keys);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    return cfg;
}

/* Writes template into out with every '@' replaced by path. */
static void config_expand(char *out, size_t len, const char *path, const char *template)
{
    size_t n = 0, plen = strlen(path);
    for (const char *t = template; *t && n + plen + 1 < len; t++) {
        if (*t == '@') {
            memcpy(out + n, path, plen);
            n += plen;
        } else {
            out[n++] = *t;
        }
    }
    out[n] = '\0';
}

/* Whether the problems recorded so far contain text (printed when they do not). */
static bool config_has_error(const struct config *cfg, const char *text)
{
    const char *all = config_errors(cfg);
    if (strstr(all, text))
        return true;
    fprintf(stderr, "expected \"%s\" among:\n%s", text, all);
    return false;
}

static void test_section_priority(void)
{
    char path[128], errbuf[256] = "";
    /* the higher-priority section comes first in the file: order in the file does not matter */
    config_write("a.ini",
                 "; comment\n"
                 "[presence]\n"
                 "http = 127.0.0.1:8182\n"
                 "only_presence = p\n"
                 "[aggproxy]\n"
                 "http = 127.0.0.1:8080\n"
                 "only_proxy = x\n"
                 "[xdms]\n"
                 "http = 127.0.0.1:9999\n"
                 "log_level = warn\n",
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "127.0.0.1:8182");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "only_presence", NULL), "p");
    /* a key of the lower section only */
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "log_level", NULL), "warn");
    /* sections of other processes are neither read nor checked (only_proxy is no key here) */
    CU_ASSERT_STRING_EQUAL(config_errors(cfg), "");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "k", "dflt"), "dflt");
    config_free(cfg);

    /* with only the generic section, its value is used */
    static const char *const xdms_only[] = {"xdms", NULL};
    cfg = config_new(xdms_only, test_keys);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "127.0.0.1:9999");
    CU_ASSERT_PTR_NULL(config_get(cfg, "only_presence", NULL));
    config_free(cfg);
}

static void test_two_files(void)
{
    char a[128], b[128], errbuf[256] = "";
    config_write("a.ini", "[xdms]\nk = from-a\nonly_a = 1\n", a, sizeof a);
    config_write("b.ini", "[xdms]\nk = from-b\n", b, sizeof b);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, a, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_EQUAL(config_load(cfg, b, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "k", NULL), "from-b");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "only_a", NULL), "1");
    config_free(cfg);
}

static void test_overrides_beat_files(void)
{
    char path[128], errbuf[256] = "";
    config_write("a.ini", "[presence]\nhttp = 127.0.0.1:8182\nmax_body = 1M\n", path, sizeof path);
    struct config *cfg = config_two_sections();
    /* an override set before the file is loaded still wins */
    CU_ASSERT_EQUAL(config_set(cfg, "http", "127.0.0.1:1"), 0);
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "127.0.0.1:1");
    CU_ASSERT_EQUAL(config_set_kv(cfg, "max_body=2K"), 0);
    uint64_t v = 0;
    CU_ASSERT_EQUAL(config_get_size(cfg, "max_body", 0, &v), 0);
    CU_ASSERT_EQUAL(v, 2048);
    /* the last override wins */
    CU_ASSERT_EQUAL(config_set_kv(cfg, "http=[::1]:2"), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "[::1]:2");
    /* key=value splitting: the first '=' separates, the value may be empty or hold '=' */
    CU_ASSERT_EQUAL(config_set_kv(cfg, "realm=a=b"), 0);
    CU_ASSERT_STRING_EQUAL(config_errors(cfg), "");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "realm", NULL), "a=b");
    CU_ASSERT_EQUAL(config_set_kv(cfg, "empty="), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "empty", "dflt"), "");
    CU_ASSERT_EQUAL(config_set_kv(cfg, "noequals"), -1);
    CU_ASSERT_EQUAL(config_set_kv(cfg, "=value"), -1);
    config_free(cfg);
}

/* config_where_key: the file and line of the value in effect, the command line, or the default. */
static void test_where_key(void)
{
    char path[128], errbuf[256] = "", where[256], want[200];
    config_write("w.ini", "[xdms]\nhttp = 127.0.0.1:1\n\n[presence]\nhttp = 127.0.0.1:2\n", path,
                 sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    snprintf(want, sizeof want, "%s:5", path); /* [presence] beats [xdms] */
    CU_ASSERT_STRING_EQUAL(config_where_key(cfg, "http", where, sizeof where), want);
    CU_ASSERT_STRING_EQUAL(config_where_key(cfg, "max_body", where, sizeof where), "the default");
    CU_ASSERT_EQUAL(config_set(cfg, "http", "127.0.0.1:3"), 0);
    CU_ASSERT_STRING_EQUAL(config_where_key(cfg, "http", where, sizeof where), "the command line");
    char tiny[4];
    CU_ASSERT_STRING_EQUAL(config_where_key(cfg, "http", tiny, sizeof tiny), "the");
    config_free(cfg);
}

struct config_collect {
    char seen[8][64];
    size_t n;
    size_t stop_at; /* return non-zero after this many values (0 = never) */
};

static int config_collect_cb(void *cls, const char *value)
{
    struct config_collect *c = cls;
    if (c->n < 8)
        snprintf(c->seen[c->n], sizeof c->seen[c->n], "%s", value);
    c->n++;
    return c->stop_at && c->n == c->stop_at ? 42 : 0;
}

static void test_each_repeated_keys(void)
{
    char path[128], errbuf[256] = "";
    config_write("each.ini",
                 "[presence]\n"
                 "trusted_peer = 10.0.0.3 server\n"
                 "[xdms]\n"
                 "trusted_peer = 127.0.0.1 proxy\n"
                 "other = z\n"
                 "trusted_peer = 127.0.0.2 server\n"
                 "[aggproxy]\n"
                 "trusted_peer = 10.9.9.9 proxy\n",
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_set(cfg, "trusted_peer", "::1 proxy"), 0);
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    struct config_collect c = {.n = 0};
    CU_ASSERT_EQUAL(config_each(cfg, "trusted_peer", config_collect_cb, &c), 0);
    CU_ASSERT_EQUAL_FATAL(c.n, 4);
    /* sections in priority order, file order inside a section, then overrides */
    CU_ASSERT_STRING_EQUAL(c.seen[0], "127.0.0.1 proxy");
    CU_ASSERT_STRING_EQUAL(c.seen[1], "127.0.0.2 server");
    CU_ASSERT_STRING_EQUAL(c.seen[2], "10.0.0.3 server");
    CU_ASSERT_STRING_EQUAL(c.seen[3], "::1 proxy");

    struct config_collect stop = {.stop_at = 2};
    CU_ASSERT_EQUAL(config_each(cfg, "trusted_peer", config_collect_cb, &stop), 42);
    CU_ASSERT_EQUAL(stop.n, 2);

    struct config_collect none = {.n = 0};
    CU_ASSERT_EQUAL(config_each(cfg, "peer", config_collect_cb, &none), 0);
    CU_ASSERT_EQUAL(none.n, 0);
    config_free(cfg);
}

/* config_where names the file and line of a value read back, or the command line. */
static int config_where_cb(void *cls, const char *value)
{
    const struct config *cfg = cls;
    char where[CONFIG_WHERE_MAX];
    config_where(cfg, "trusted_peer", value, where, sizeof where);
    if (strcmp(value, "127.0.0.2 server") == 0)
        CU_ASSERT_PTR_NOT_NULL(strstr(where, "where.ini:4"));
    if (strcmp(value, "::1 proxy") == 0)
        CU_ASSERT_STRING_EQUAL(where, "the command line");
    return 0;
}

static void test_where(void)
{
    char path[128], errbuf[256] = "";
    config_write("where.ini",
                 "[xdms]\n"
                 "trusted_peer = 127.0.0.1 proxy\n"
                 "other = z\n"
                 "trusted_peer = 127.0.0.2 server\n",
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_set(cfg, "trusted_peer", "::1 proxy"), 0);
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_EQUAL(config_each(cfg, "trusted_peer", config_where_cb, cfg), 0);
    char where[CONFIG_WHERE_MAX];
    const char *other = config_get(cfg, "other", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    char want[200];
    snprintf(want, sizeof want, "%s:3", path);
    CU_ASSERT_STRING_EQUAL(config_where(cfg, "other", other, where, sizeof where), want);
    CU_ASSERT_STRING_EQUAL(config_where(cfg, "other", "not set", where, sizeof where),
                           "the default");
    config_free(cfg);
}

static void test_get_uint(void)
{
    struct config *cfg = config_two_sections();
    uint64_t v = 1;
    CU_ASSERT_EQUAL(config_get_uint(cfg, "n", 77, &v), 0);
    CU_ASSERT_EQUAL(v, 77);
    static const struct {
        const char *text;
        int rc;
        uint64_t value;
    } cases[] = {
        {"0", 0, 0},
        {"42", 0, 42},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", -1, 0},
        {"-1", -1, 0},
        {" -1", -1, 0},
        {"", -1, 0},
        {"abc", -1, 0},
        {"12x", -1, 0},
        {"1K", -1, 0},
        {"0x10", -1, 0},
    };
    /* a value that does not parse is refused when set, and the earlier value stays */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = config_set(cfg, "n", cases[i].text);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "uint case \"%s\": rc %d\n", cases[i].text, rc);
        if (cases[i].rc == 0) {
            v = 12345;
            CU_ASSERT_EQUAL(config_get_uint(cfg, "n", 7, &v), 0);
            CU_ASSERT_EQUAL(v, cases[i].value);
            CU_ASSERT_EQUAL(config_u64(cfg, "n"), cases[i].value);
        }
    }
    config_free(cfg);
}

static void test_get_size(void)
{
    struct config *cfg = config_two_sections();
    uint64_t v = 1;
    CU_ASSERT_EQUAL(config_get_size(cfg, "s", 4096, &v), 0);
    CU_ASSERT_EQUAL(v, 4096);
    static const struct {
        const char *text;
        int rc;
        uint64_t value;
    } cases[] = {
        {"512", 0, 512},
        {"0", 0, 0},
        {"4K", 0, 4096},
        {"4k", 0, 4096},
        {"2M", 0, 2ull << 20},
        {"2m", 0, 2ull << 20},
        {"3G", 0, 3ull << 30},
        {"16777215G", 0, 16777215ull << 30},
        {"17179869184G", -1, 0}, /* 2^64: overflow */
        {"K", -1, 0},
        {"M", -1, 0},
        {"", -1, 0},
        {"5T", -1, 0},
        {"5KB", -1, 0},
        {"-1K", -1, 0},
        {" -1", -1, 0},
        {"1.5M", -1, 0},
        {"x", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = config_set(cfg, "s", cases[i].text);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "size case \"%s\": rc %d\n", cases[i].text, rc);
        if (cases[i].rc == 0) {
            v = 12345;
            CU_ASSERT_EQUAL(config_get_size(cfg, "s", 7, &v), 0);
            CU_ASSERT_EQUAL(v, cases[i].value);
            CU_ASSERT_EQUAL(config_u64(cfg, "s"), cases[i].value);
        }
    }
    config_free(cfg);
}

static void test_get_bool(void)
{
    struct config *cfg = config_two_sections();
    bool v = false;
    CU_ASSERT_EQUAL(config_get_bool(cfg, "b", true, &v), 0);
    CU_ASSERT_EQUAL(v, true);
    static const char *const yes[] = {"yes", "YES", "true", "True", "on", "1"};
    static const char *const no[] = {"no", "No", "false", "FALSE", "off", "0"};
    static const char *const bad[] = {"", "maybe", "2", "y", "yes please"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(config_set(cfg, "b", yes[i]), 0);
        v = false;
        CU_ASSERT_EQUAL(config_get_bool(cfg, "b", false, &v), 0);
        CU_ASSERT_EQUAL(v, true);
        CU_ASSERT_EQUAL(config_bool(cfg, "b"), true);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(config_set(cfg, "b", no[i]), 0);
        v = true;
        CU_ASSERT_EQUAL(config_get_bool(cfg, "b", true, &v), 0);
        CU_ASSERT_EQUAL(v, false);
        CU_ASSERT_EQUAL(config_bool(cfg, "b"), false);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(config_set(cfg, "b", bad[i]), -1);
    CU_ASSERT(config_has_error(cfg, "the command line: b=maybe: not a boolean (yes/no)"));
    config_free(cfg);
}

static void test_hostport(void)
{
    static const struct {
        const char *text;
        int rc;
        const char *host;
        uint16_t port;
    } cases[] = {
        {"127.0.0.1:8080", 0, "127.0.0.1", 8080},
        {"localhost:1", 0, "localhost", 1},
        {"[::1]:5060", 0, "::1", 5060},
        {"[fe80::1:2]:65535", 0, "fe80::1:2", 65535},
        {"127.0.0.1:0", 0, "127.0.0.1", 0},
        {"127.0.0.1:65536", -1, NULL, 0},
        {"127.0.0.1", -1, NULL, 0},
        {"127.0.0.1:", -1, NULL, 0},
        {":8080", -1, NULL, 0},
        {"[::1]", -1, NULL, 0},
        {"[::1]5060", -1, NULL, 0},
        {"[]:5060", -1, NULL, 0},
        {"[::1:5060", -1, NULL, 0},
        {"host:80x", -1, NULL, 0},
        {"host:-1", -1, NULL, 0},
        {"host: 80", -1, NULL, 0},
        {"host:+80", -1, NULL, 0},
        {"", -1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64] = "untouched";
        uint16_t port = 4242;
        int rc = config_parse_hostport(cases[i].text, host, sizeof host, &port);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "hostport case \"%s\": rc %d\n", cases[i].text, rc);
        if (cases[i].rc == 0 && rc == 0) {
            CU_ASSERT_STRING_EQUAL(host, cases[i].host);
            CU_ASSERT_EQUAL(port, cases[i].port);
        }
    }
    /* the host buffer bound: "abcd" needs 5 bytes */
    char small[5];
    uint16_t port = 0;
    CU_ASSERT_EQUAL(config_parse_hostport("abcd:1", small, sizeof small, &port), 0);
    CU_ASSERT_STRING_EQUAL(small, "abcd");
    CU_ASSERT_EQUAL(config_parse_hostport("abcde:1", small, sizeof small, &port), -1);
    CU_ASSERT_EQUAL(config_parse_hostport("[1::abcd]:1", small, sizeof small, &port), -1);
}

static void test_missing_files(void)
{
    char path[128], errbuf[256] = "";
    config_file_path("does-not-exist.ini", path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, false, errbuf, sizeof errbuf), 0);
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(errbuf, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(errbuf, "No such file"));
    /* a directory is not a readable configuration file even when optional */
    errbuf[0] = '\0';
    int rc = config_load(cfg, config_dir, false, errbuf, sizeof errbuf);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(errbuf[0] != '\0');
    config_free(cfg);
}

static void test_syntax_error_line(void)
{
    char path[128], errbuf[256] = "";
    config_write("bad.ini",
                 "[xdms]\n"
                 "k = 1\n"
                 "this line has no separator\n"
                 "x = 2\n",
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), -1);
    char expect[200];
    snprintf(expect, sizeof expect, "%s:3:", path);
    CU_ASSERT_EQUAL(strncmp(errbuf, expect, strlen(expect)), 0);
    if (strncmp(errbuf, expect, strlen(expect)) != 0)
        fprintf(stderr, "errbuf: %s\n", errbuf);
    config_free(cfg);

    /* an unterminated section header on line 2 */
    config_write("badsec.ini", "# ok\n[xdms\nk = v\n", path, sizeof path);
    cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), -1);
    snprintf(expect, sizeof expect, "%s:2:", path);
    CU_ASSERT_EQUAL(strncmp(errbuf, expect, strlen(expect)), 0);
    config_free(cfg);
}

static void test_new_with_no_sections(void)
{
    struct config *cfg = config_new(NULL, test_keys);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(config_set(cfg, "k", "v"), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "k", NULL), "v");
    config_free(cfg);
    config_free(NULL);
}

/* A writable argv built from literals (getopt may permute it); lives as long as the struct. */
struct argv_copy {
    int argc;
    char *argv[16];
    char buf[512];
};

static char **argv_make(struct argv_copy *c, const char *const *v)
{
    size_t used = 0;
    c->argc = 0;
    for (; *v && c->argc < 15; v++) {
        size_t n = strlen(*v) + 1;
        memcpy(c->buf + used, *v, n);
        c->argv[c->argc++] = c->buf + used;
        used += n;
    }
    c->argv[c->argc] = NULL;
    return c->argv;
}

/* Runs config_args_parse over a NULL-terminated literal argv. */
static enum config_args_rc config_parse_literal(const char *const *v, struct config_args **a,
                                                char *err, size_t errlen)
{
    static const char *const values[] = {"role", NULL};
    static struct argv_copy c; /* config_args borrows argv: keep it until the next call */
    char **argv = argv_make(&c, v);
    return config_args_parse(c.argc, argv, values, test_keys, a, err, errlen);
}

static void test_args(void)
{
    char err[1024];
    struct config_args *a;
    static const char *const argv1[] = {
        "prog",        "--role",   "presence", "--option",    "http=1.2.3.4:1", "--http",
        "127.0.0.1:9", "--option", "x=y",      "--log-level", "debug",          NULL};
    CU_ASSERT_EQUAL_FATAL(config_parse_literal(argv1, &a, err, sizeof err), CONFIG_ARGS_OK);
    CU_ASSERT_STRING_EQUAL(config_args_value(a, "role"), "presence");
    CU_ASSERT_PTR_NULL(config_args_value(a, "nope"));
    CU_ASSERT_PTR_NULL(config_args_value(a, "http")); /* a key's flag, not a program value */
    CU_ASSERT_FALSE(config_args_check_only(a));
    const char *sections[] = {"s", NULL};
    struct config *cfg = config_args_load(a, sections, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    /* command-line order: the later --http beats the earlier --option http= */
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "127.0.0.1:9");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "x", NULL), "y");
    CU_ASSERT_STRING_EQUAL(config_str(cfg, "log_level"), "debug");
    config_free(cfg);
    config_args_free(a);

    static const char *const argv2[] = {"prog", "--help", NULL};
    CU_ASSERT_EQUAL(config_parse_literal(argv2, &a, err, sizeof err), CONFIG_ARGS_HELP);
    CU_ASSERT_PTR_NULL(a);
    static const char *const argv3[] = {"prog", "--bogus", "1", NULL};
    CU_ASSERT_EQUAL(config_parse_literal(argv3, &a, err, sizeof err), CONFIG_ARGS_USAGE);
    static const char *const argv4[] = {"prog", "--http", NULL};
    CU_ASSERT_EQUAL(config_parse_literal(argv4, &a, err, sizeof err), CONFIG_ARGS_USAGE);
    static const char *const argv5[] = {"prog", "stray", NULL};
    CU_ASSERT_EQUAL(config_parse_literal(argv5, &a, err, sizeof err), CONFIG_ARGS_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stray"));
    /* --config twice would silently drop the first file */
    static const char *const argv5b[] = {"prog", "--config", "a", "--config", "b", NULL};
    CU_ASSERT_EQUAL(config_parse_literal(argv5b, &a, err, sizeof err), CONFIG_ARGS_USAGE);
    CU_ASSERT_STRING_EQUAL(err, "--config given twice (\"a\", \"b\")");

    static const char *const argv6[] = {"prog", "--option", "novalue", NULL};
    CU_ASSERT_EQUAL_FATAL(config_parse_literal(argv6, &a, err, sizeof err), CONFIG_ARGS_OK);
    CU_ASSERT_PTR_NULL(config_args_load(a, sections, err, sizeof err));
    CU_ASSERT_STRING_EQUAL(err, "the command line: --option novalue: needs KEY=VALUE");
    config_args_free(a);
    static const char *const argv7[] = {"prog", "--config", "/nonexistent/xdm.conf", NULL};
    CU_ASSERT_EQUAL_FATAL(config_parse_literal(argv7, &a, err, sizeof err), CONFIG_ARGS_OK);
    CU_ASSERT_PTR_NULL(config_args_load(a, sections, err, sizeof err)); /* given, so required */
    CU_ASSERT_STRING_EQUAL(err, "/nonexistent/xdm.conf: No such file or directory");
    config_args_free(a);
}

/* Unknown keys and bad values on the command line name the option as given; every problem is
 * reported, not only the first. */
static void test_args_strict(void)
{
    char err[1024];
    struct config_args *a;
    static const char *const argv[] = {
        "prog",   "--option",        "store=postgresql", "--option", "threads=0",
        "--http", "127.0.0.1:65536", "--check-config",   "--option", "threads=8",
        NULL};
    CU_ASSERT_EQUAL_FATAL(config_parse_literal(argv, &a, err, sizeof err), CONFIG_ARGS_OK);
    CU_ASSERT_TRUE(config_args_check_only(a));
    const char *sections[] = {"xdms", NULL};
    CU_ASSERT_PTR_NULL(config_args_load(a, sections, err, sizeof err));
    CU_ASSERT_STRING_EQUAL(err,
                           "the command line: --option store=postgresql: unknown key \"store\"\n"
                           "the command line: --option threads=0: out of range (1..64)\n"
                           "the command line: --http 127.0.0.1:65536: not HOST:PORT or "
                           "[IPv6]:PORT with a port 0..65535");
    config_args_free(a);
}

/* The strict checks of a file: every problem with its file and line, in file order; sections of
 * other processes are only checked for their name. */
static void test_file_strict(void)
{
    char path[128], errbuf[2048] = "";
    config_write("strict.ini",
                 "; the keys of another process are not checked here\n" /* 1 */
                 "[aggproxy]\n"                                         /* 2 */
                 "nonce_lifetime = 0\n"                                 /* 3 */
                 "  indented = not read\n"                              /* 4 */
                 "[xdms]\n"                                             /* 5 */
                 "threads = 0\n"                                        /* 6 */
                 "stroe = lmdb\n"                                       /* 7 */
                 "max_body = 0\n"                                       /* 8 */
                 "http = 127.0.0.1:70000\n"                             /* 9 */
                 "log_level = loud\n"                                   /* 10 */
                 "listen = off\n"                                       /* 11 */
                 "peer = ::1\n"                                         /* 12 */
                 "peer = example.com\n"                                 /* 13 */
                 "realm = longer-than-8\n"                              /* 14 */
                 "gzip = maybe\n"                                       /* 15 */
                 "cert = /nonexistent.pem\n"                            /* 16 */
                 "[presence]\n"                                         /* 17 */
                 "k = a\n"                                              /* 18 */
                 "k = b\n"                                              /* 19 */
                 "  continued\n"                                        /* 20 */
                 "[presense]\n"                                         /* 21 */
                 "k = c\n"                                              /* 22 */
                 "no separator\n"                                       /* 23 */
                 "[xdms\n",                                             /* 24 */
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), -1);
    char expect[2048];
    config_expand(expect, sizeof expect, path,
                  "@:6: threads = 0: out of range (1..64)\n"
                  "@:7: unknown key \"stroe\" in [xdms]\n"
                  "@:8: max_body = 0: out of range (1..4G)\n"
                  "@:9: http = 127.0.0.1:70000: not HOST:PORT or [IPv6]:PORT with a port 0..65535\n"
                  "@:10: log_level = loud: must be one of error|warn|info|debug\n"
                  "@:13: peer = example.com: not a numeric IPv4 or IPv6 address\n"
                  "@:14: realm = longer-than-8: longer than 8 characters\n"
                  "@:15: gzip = maybe: not a boolean (yes/no)\n"
                  "@:16: cert = /nonexistent.pem: cannot open: No such file or directory\n"
                  "@:19: k is given twice in [presence] (first on line 18) and is not repeatable\n"
                  "@:20: indented line would continue the value of k; multi-line values are not "
                  "supported (remove the indentation)\n"
                  "@:21: unknown section [presense] (known: [aggproxy], [xdms], [shared-list], "
                  "[presence], [rls], [ut], [charging])\n"
                  "@:23: syntax error (expected [section], KEY = VALUE or a comment)\n"
                  "@:24: syntax error (a section header needs a closing ']')");
    CU_ASSERT_STRING_EQUAL(errbuf, expect);
    if (strcmp(errbuf, expect) != 0)
        fprintf(stderr, "got:\n%s\nexpected:\n%s\n", errbuf, expect);
    /* good values are kept; the first of a duplicate wins while the file is being fixed */
    CU_ASSERT_STRING_EQUAL(config_str(cfg, "listen"), "off");
    CU_ASSERT_STRING_EQUAL(config_str(cfg, "k"), "a");
    config_free(cfg);

    /* a key before any section; an indented first key of a section is a key, not a continuation */
    config_write("strict.ini", "k = 1\n[xdms]\n  x = 2\n", path, sizeof path);
    cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), -1);
    snprintf(expect, sizeof expect, "%s:1: k is outside any section", path);
    CU_ASSERT_STRING_EQUAL(errbuf, expect);
    CU_ASSERT_STRING_EQUAL(config_str(cfg, "x"), "2");
    config_free(cfg);
}

/* Repeatable keys repeat; a key in [xdms] and again in [presence] is an override, not a
 * duplicate; two files may set the same key. */
static void test_repeat_and_override(void)
{
    char path[128], errbuf[1024] = "";
    config_write("strict.ini",
                 "[xdms]\ntrusted_peer = a proxy\ntrusted_peer = b proxy\npeer = 127.0.0.1\n"
                 "threads = 2\n[presence]\nthreads = 3\npeer = ::1\n",
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_errors(cfg), "");
    CU_ASSERT_EQUAL(config_u64(cfg, "threads"), 3);
    struct config_collect c = {.n = 0};
    CU_ASSERT_EQUAL(config_each(cfg, "peer", config_collect_cb, &c), 0);
    CU_ASSERT_EQUAL(c.n, 4); /* two loads of two values */
    config_free(cfg);
}

/* A line longer than inih's buffer is reported instead of being split into two lines, and the
 * lines after it keep their numbers. */
static void test_long_line(void)
{
    char path[128], errbuf[1024] = "";
    char text[600];
    snprintf(text, sizeof text, "[xdms]\nk = %0300d\nstroe = 1\n", 7);
    config_write("strict.ini", text, path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), -1);
    char expect[512];
    config_expand(expect, sizeof expect, path,
                  "@:2: line longer than 199 characters\n"
                  "@:3: unknown key \"stroe\" in [xdms]");
    CU_ASSERT_STRING_EQUAL(errbuf, expect);
    CU_ASSERT_PTR_NULL(config_str(cfg, "k"));
    config_free(cfg);

    /* 199 characters fit, with or without a final newline */
    for (int nl = 0; nl < 2; nl++) {
        snprintf(text, sizeof text, "[xdms]\nk = %0195d%s", 7, nl ? "\n" : "");
        config_write("strict.ini", text, path, sizeof path);
        cfg = config_two_sections();
        CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
        CU_ASSERT_EQUAL(strlen(config_str(cfg, "k")), 195);
        config_free(cfg);
    }

    /* in another process's section it is that process's problem */
    snprintf(text, sizeof text, "[aggproxy]\nk = %0300d\n[xdms]\nk = 1\n", 7);
    config_write("strict.ini", text, path, sizeof path);
    cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_str(cfg, "k"), "1");
    config_free(cfg);
}

/* Table defaults feed the table-driven getters; a value beats them. */
static void test_table_defaults(void)
{
    struct config *cfg = config_two_sections();
    CU_ASSERT_STRING_EQUAL(config_str(cfg, "log_level"), "info");
    CU_ASSERT_EQUAL(config_u64(cfg, "max_body"), 1 << 20);
    CU_ASSERT_EQUAL(config_u64(cfg, "threads"), 4);
    CU_ASSERT_EQUAL(config_u64(cfg, "n"), 0); /* no default */
    CU_ASSERT_EQUAL(config_bool(cfg, "gzip"), true);
    CU_ASSERT_EQUAL(config_bool(cfg, "b"), false);
    CU_ASSERT_PTR_NULL(config_str(cfg, "http"));
    CU_ASSERT_EQUAL(config_set(cfg, "max_body", "2K"), 0);
    CU_ASSERT_EQUAL(config_u64(cfg, "max_body"), 2048);
    config_free(cfg);
}

/* A wrong table is refused by config_new: it is a program bug, shown at the first start. */
static void test_bad_tables(void)
{
    static const struct config_key dup[] = {
        {"a", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "x"},
        {"a", CONFIG_STR, 0, 0, NULL, NULL, 0, NULL, "x"},
        {0},
    };
    static const struct config_key dup_flag[] = {
        {"a", CONFIG_STR, 0, 0, NULL, "f", 0, NULL, "x"},
        {"b", CONFIG_STR, 0, 0, NULL, "f", 0, NULL, "x"},
        {0},
    };
    static const struct config_key bad_def[] = {
        {"a", CONFIG_UINT, 1, 10, "0", NULL, 0, NULL, "x"},
        {0},
    };
    static const struct config_key no_choices[] = {
        {"a", CONFIG_ENUM, 0, 0, NULL, NULL, 0, NULL, "x"},
        {0},
    };
    static const struct config_key inverted[] = {
        {"a", CONFIG_SIZE, 10, 1, NULL, NULL, 0, NULL, "x"},
        {0},
    };
    const struct config_key *bad[] = {dup, dup_flag, bad_def, no_choices, inverted};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_PTR_NULL(config_new(NULL, bad[i]));
}

/* At most 20 problems are kept; the rest are counted. */
static void test_error_cap(void)
{
    struct config *cfg = config_two_sections();
    for (int i = 0; i < 25; i++)
        CU_ASSERT_EQUAL(config_set(cfg, "threads", "0"), -1);
    const char *all = config_errors(cfg);
    size_t lines = 0;
    for (const char *c = all; *c; c++)
        lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, 21);
    CU_ASSERT_PTR_NOT_NULL(strstr(all, "\n... and 5 more problem(s)\n"));
    config_free(cfg);
}

static void test_section_known(void)
{
    static const char *const known[] = {"aggproxy", "xdms", "shared-list", "presence", "rls"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        CU_ASSERT_TRUE(config_section_known(known[i]));
    CU_ASSERT_FALSE(config_section_known(""));
    CU_ASSERT_FALSE(config_section_known("XDMS"));
    CU_ASSERT_FALSE(config_section_known("presence "));
}

static void test_print_errors_and_usage(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    config_print_errors(f, "xdms", "a:1: one\nthe command line: two");
    config_keys_usage(f, test_keys + 1);
    fclose(f);
    CU_ASSERT_EQUAL(strncmp(text,
                            "xdms: a:1: one\nxdms: the command line: two\n"
                            "  log_level                verbosity: error|warn|info|debug (default "
                            "info)\n",
                            strlen("xdms: a:1: one\nxdms: the command line: two\n  log_level ")),
                    0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  trusted_peer             repeatable [repeatable]\n"));
    free(text);
}

static void config_diff_collect(void *cls, const char *key)
{
    char *out = cls;
    strcat(out, key);
    strcat(out, " ");
}

static void test_diff(void)
{
    static const char *const sections[] = {"xdms", NULL};
    struct config *a = config_new(sections, test_keys), *b = config_new(sections, test_keys);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    /* Equal by value: a size with a suffix, a boolean's spellings, a default written out. */
    CU_ASSERT_EQUAL(config_set(a, "max_body", "1M"), 0);
    CU_ASSERT_EQUAL(config_set(b, "max_body", "1048576"), 0);
    CU_ASSERT_EQUAL(config_set(a, "b", "yes"), 0);
    CU_ASSERT_EQUAL(config_set(b, "b", "true"), 0);
    CU_ASSERT_EQUAL(config_set(b, "threads", "4"), 0);
    CU_ASSERT_EQUAL(config_set(a, "trusted_peer", "127.0.0.1 server"), 0);
    CU_ASSERT_EQUAL(config_set(b, "trusted_peer", "127.0.0.1 server"), 0);
    CU_ASSERT_EQUAL(config_diff(a, b, NULL, NULL), 0);
    /* Different: a changed value, one set on one side only, a repeatable key with one more. */
    CU_ASSERT_EQUAL(config_set(b, "log_level", "debug"), 0);
    CU_ASSERT_EQUAL(config_set(a, "k", "v"), 0);
    CU_ASSERT_EQUAL(config_set(b, "trusted_peer", "127.0.0.2 server"), 0);
    char names[256] = "";
    CU_ASSERT_EQUAL(config_diff(a, b, config_diff_collect, names), 3);
    CU_ASSERT_STRING_EQUAL(names, "log_level k trusted_peer ");
    config_free(a);
    config_free(b);
}

static CU_TestInfo config_tests[] = {
    {"config_where: file and line of a value", test_where},
    {"config_diff: changed keys by value", test_diff},
    {"command-line arguments", test_args},
    {"command line: unknown keys and bad values", test_args_strict},
    {"file: unknown keys, sections, values, duplicates, syntax", test_file_strict},
    {"repeatable keys, section overrides, two loads", test_repeat_and_override},
    {"a line longer than the parser's buffer", test_long_line},
    {"table defaults", test_table_defaults},
    {"wrong key tables are refused", test_bad_tables},
    {"at most 20 problems kept", test_error_cap},
    {"known sections", test_section_known},
    {"printing problems and the key list", test_print_errors_and_usage},
    {"section priority", test_section_priority},
    {"a later file beats an earlier one", test_two_files},
    {"overrides beat files", test_overrides_beat_files},
    {"repeated keys via config_each", test_each_repeated_keys},
    {"where a value was set", test_where_key},
    {"config_get_uint", test_get_uint},
    {"config_get_size with suffixes", test_get_size},
    {"config_get_bool", test_get_bool},
    {"host:port and [v6]:port", test_hostport},
    {"missing and required files", test_missing_files},
    {"syntax error names the line", test_syntax_error_line},
    {"no sections, overrides only", test_new_with_no_sections},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"config", config_suite_init, config_suite_cleanup, NULL, NULL, config_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
