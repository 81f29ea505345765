/* common/config.c: section priority, overrides, repeated keys, typed getters, host:port, file
 * errors. Files are written to a private temporary directory. */
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
    static const char *const names[] = {"a.ini", "b.ini", "bad.ini", "each.ini", "badsec.ini"};
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

static struct config *config_two_sections(void)
{
    static const char *const sections[] = {"xdms", "presence", NULL};
    struct config *cfg = config_new(sections);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    return cfg;
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
                 "log_level = debug\n"
                 "log_level = warn\n",
                 path, sizeof path);
    struct config *cfg = config_two_sections();
    CU_ASSERT_EQUAL(config_load(cfg, path, true, errbuf, sizeof errbuf), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "127.0.0.1:8182");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "only_presence", NULL), "p");
    /* a key of the lower section only */
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "log_level", NULL), "warn");
    /* sections of other processes are not read */
    CU_ASSERT_PTR_NULL(config_get(cfg, "only_proxy", NULL));
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "missing", "dflt"), "dflt");
    config_free(cfg);

    /* with only the generic section, its value is used */
    static const char *const xdms_only[] = {"xdms", NULL};
    cfg = config_new(xdms_only);
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
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "realm", NULL), "a=b");
    CU_ASSERT_EQUAL(config_set_kv(cfg, "empty="), 0);
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "empty", "dflt"), "");
    CU_ASSERT_EQUAL(config_set_kv(cfg, "noequals"), -1);
    CU_ASSERT_EQUAL(config_set_kv(cfg, "=value"), -1);
    CU_ASSERT_PTR_NULL(config_get(cfg, "noequals", NULL));
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
    CU_ASSERT_EQUAL(config_each(cfg, "absent", config_collect_cb, &none), 0);
    CU_ASSERT_EQUAL(none.n, 0);
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
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(config_set(cfg, "n", cases[i].text), 0);
        v = 12345;
        int rc = config_get_uint(cfg, "n", 7, &v);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "uint case \"%s\": rc %d\n", cases[i].text, rc);
        if (cases[i].rc == 0)
            CU_ASSERT_EQUAL(v, cases[i].value);
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
        CU_ASSERT_EQUAL_FATAL(config_set(cfg, "s", cases[i].text), 0);
        v = 12345;
        int rc = config_get_size(cfg, "s", 7, &v);
        CU_ASSERT_EQUAL(rc, cases[i].rc);
        if (rc != cases[i].rc)
            fprintf(stderr, "size case \"%s\": rc %d\n", cases[i].text, rc);
        if (cases[i].rc == 0)
            CU_ASSERT_EQUAL(v, cases[i].value);
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
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(config_set(cfg, "b", no[i]), 0);
        v = true;
        CU_ASSERT_EQUAL(config_get_bool(cfg, "b", true, &v), 0);
        CU_ASSERT_EQUAL(v, false);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(config_set(cfg, "b", bad[i]), 0);
        CU_ASSERT_EQUAL(config_get_bool(cfg, "b", true, &v), -1);
    }
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
                 "good = 1\n"
                 "this line has no separator\n"
                 "later = 2\n",
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
    struct config *cfg = config_new(NULL);
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

static void test_args(void)
{
    static const struct config_flag flags[] = {
        {"role", NULL}, {"http", "http"}, {"log-level", "log_level"}, {NULL, NULL}};
    char err[256];
    struct config_args *a;
    static const char *const argv1_v[] = {
        "prog",        "--role",   "presence", "--option",    "http=1.2.3.4:1", "--http",
        "127.0.0.1:9", "--option", "x=y",      "--log-level", "debug",          NULL};
    struct argv_copy argv1_c;
    char **argv1 = argv_make(&argv1_c, argv1_v);
    CU_ASSERT_EQUAL_FATAL(config_args_parse(argv1_c.argc, argv1, flags, &a, err, sizeof err),
                          CONFIG_ARGS_OK);
    CU_ASSERT_STRING_EQUAL(config_args_value(a, "role"), "presence");
    CU_ASSERT_PTR_NULL(config_args_value(a, "nope"));
    const char *sections[] = {"s", NULL};
    struct config *cfg = config_args_load(a, sections, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    /* command-line order: the later --http beats the earlier --option http= */
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "http", NULL), "127.0.0.1:9");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "x", NULL), "y");
    CU_ASSERT_STRING_EQUAL(config_get(cfg, "log_level", NULL), "debug");
    CU_ASSERT_PTR_NULL(config_get(cfg, "role", NULL)); /* a program value, not a key */
    config_free(cfg);
    config_args_free(a);

    static const char *const argv2_v[] = {"prog", "--help", NULL};
    struct argv_copy argv2_c;
    char **argv2 = argv_make(&argv2_c, argv2_v);
    CU_ASSERT_EQUAL(config_args_parse(argv2_c.argc, argv2, flags, &a, err, sizeof err),
                    CONFIG_ARGS_HELP);
    CU_ASSERT_PTR_NULL(a);
    static const char *const argv3_v[] = {"prog", "--bogus", "1", NULL};
    struct argv_copy argv3_c;
    char **argv3 = argv_make(&argv3_c, argv3_v);
    CU_ASSERT_EQUAL(config_args_parse(argv3_c.argc, argv3, flags, &a, err, sizeof err),
                    CONFIG_ARGS_USAGE);
    static const char *const argv4_v[] = {"prog", "--http", NULL};
    struct argv_copy argv4_c;
    char **argv4 = argv_make(&argv4_c, argv4_v);
    CU_ASSERT_EQUAL(config_args_parse(argv4_c.argc, argv4, flags, &a, err, sizeof err),
                    CONFIG_ARGS_USAGE);
    static const char *const argv5_v[] = {"prog", "stray", NULL};
    struct argv_copy argv5_c;
    char **argv5 = argv_make(&argv5_c, argv5_v);
    CU_ASSERT_EQUAL(config_args_parse(argv5_c.argc, argv5, flags, &a, err, sizeof err),
                    CONFIG_ARGS_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stray"));
    static const char *const argv6_v[] = {"prog", "--option", "novalue", NULL};
    struct argv_copy argv6_c;
    char **argv6 = argv_make(&argv6_c, argv6_v);
    CU_ASSERT_EQUAL_FATAL(config_args_parse(argv6_c.argc, argv6, flags, &a, err, sizeof err),
                          CONFIG_ARGS_OK);
    CU_ASSERT_PTR_NULL(config_args_load(a, sections, err, sizeof err));
    config_args_free(a);
    static const char *const argv7_v[] = {"prog", "--config", "/nonexistent/xdm.conf", NULL};
    struct argv_copy argv7_c;
    char **argv7 = argv_make(&argv7_c, argv7_v);
    CU_ASSERT_EQUAL_FATAL(config_args_parse(argv7_c.argc, argv7, flags, &a, err, sizeof err),
                          CONFIG_ARGS_OK);
    CU_ASSERT_PTR_NULL(config_args_load(a, sections, err, sizeof err)); /* given, so required */
    config_args_free(a);
}

static CU_TestInfo config_tests[] = {
    {"command-line arguments", test_args},
    {"section priority", test_section_priority},
    {"a later file beats an earlier one", test_two_files},
    {"overrides beat files", test_overrides_beat_files},
    {"repeated keys via config_each", test_each_repeated_keys},
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
