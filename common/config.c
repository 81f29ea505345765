#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "log.h"

/* The sections of the shared file, one per process kind; [xdms] is read by every XDMS before its
 * role's own section. A new process kind adds its section here. [charging] is read by every
 * process, before its own sections (docs/charging.md). */
static const char *const config_known_sections[] = {
    "aggproxy", "xdms", "shared-list", "presence", "rls", "ut", "charging", NULL,
};

bool config_section_known(const char *name)
{
    for (const char *const *s = config_known_sections; *s; s++)
        if (strcmp(*s, name) == 0)
            return true;
    return false;
}

static const struct config_key *config_key_find(const struct config_key *keys, const char *name)
{
    for (const struct config_key *k = keys; k && k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

/* Writes the "N more" line after the kept problems (cfg->errors_len excludes it). */
static void config_error_trailer(struct config *cfg)
{
    char more[64];
    int n = snprintf(more, sizeof more, "... and %u more problem(s)\n", cfg->n_dropped);
    char *e = realloc(cfg->errors, cfg->errors_len + (size_t)n + 1);
    if (!e)
        return;
    memcpy(e + cfg->errors_len, more, (size_t)n + 1);
    cfg->errors = e;
}

/* Records one problem; the message is formatted like printf. */
void config_error(struct config *cfg, const char *fmt, ...)
{
    if (cfg->n_errors >= CONFIG_MAX_ERRORS) {
        cfg->n_dropped++;
        config_error_trailer(cfg);
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = strlen(line);
    char *e = realloc(cfg->errors, cfg->errors_len + len + 2);
    if (!e) {
        cfg->n_dropped++;
        return;
    }
    memcpy(e + cfg->errors_len, line, len);
    e[cfg->errors_len + len] = '\n';
    e[cfg->errors_len + len + 1] = '\0';
    cfg->errors = e;
    cfg->errors_len += len + 1;
    cfg->n_errors++;
}

const char *config_errors(const struct config *cfg)
{
    return cfg->errors ? cfg->errors : "";
}

/* Copies the problems recorded since mark (an offset into cfg->errors) into errbuf. */
void config_errors_since(const struct config *cfg, size_t mark, char *errbuf, size_t errlen)
{
    if (!errlen)
        return;
    const char *all = config_errors(cfg);
    size_t n = strlen(all);
    snprintf(errbuf, errlen, "%s", mark < n ? all + mark : "");
    size_t len = strlen(errbuf);
    if (len && errbuf[len - 1] == '\n')
        errbuf[len - 1] = '\0'; /* callers print errbuf as they print any message */
}

void config_print_errors(FILE *f, const char *prog, const char *msgs)
{
    while (*msgs) {
        size_t n = strcspn(msgs, "\n");
        fprintf(f, "%s: %.*s\n", prog, (int)n, msgs);
        msgs += n;
        if (*msgs)
            msgs++;
    }
}

static bool config_enum_has(const char *choices, const char *v)
{
    size_t len = strlen(v);
    for (const char *c = choices; *c;) {
        size_t n = strcspn(c, "|");
        if (n == len && strncmp(c, v, n) == 0)
            return true;
        c += n;
        if (*c)
            c++;
    }
    return false;
}

/* Writes a size the way a user would write it: 1G rather than 1073741824. */
static void config_size_text(uint64_t n, char *out, size_t len)
{
    static const char units[] = "GMK";
    for (int i = 0; i < 3; i++) {
        uint64_t u = 1ull << (10 * (3 - i));
        if (n >= u && n % u == 0) {
            snprintf(out, len, "%" PRIu64 "%c", n / u, units[i]);
            return;
        }
    }
    snprintf(out, len, "%" PRIu64, n);
}

/* Checks value against its row; on failure writes why into why. */
static int config_check(const struct config_key *k, const char *v, char *why, size_t len)
{
    uint64_t n = 0;
    char lo[32], hi[32];
    switch (k->type) {
    case CONFIG_STR:
        if (k->max && strlen(v) > k->max) {
            snprintf(why, len, "longer than %" PRIu64 " characters", k->max);
            return -1;
        }
        return 0;
    case CONFIG_UINT:
    case CONFIG_SIZE:
        if (k->type == CONFIG_UINT ? config_parse_uint(v, &n) < 0 : config_parse_size(v, &n) < 0) {
            snprintf(why, len, "%s",
                     k->type == CONFIG_UINT ? "not a non-negative integer"
                                            : "not a size (bytes, or with K, M, G)");
            return -1;
        }
        if (n < k->min || n > k->max) {
            if (k->type == CONFIG_SIZE) {
                config_size_text(k->min, lo, sizeof lo);
                config_size_text(k->max, hi, sizeof hi);
            } else {
                snprintf(lo, sizeof lo, "%" PRIu64, k->min);
                snprintf(hi, sizeof hi, "%" PRIu64, k->max);
            }
            snprintf(why, len, "out of range (%s..%s)", lo, hi);
            return -1;
        }
        return 0;
    case CONFIG_BOOL: {
        bool b;
        if (config_parse_bool(v, &b) < 0) {
            snprintf(why, len, "not a boolean (yes/no)");
            return -1;
        }
        return 0;
    }
    case CONFIG_ENUM:
        if (!config_enum_has(k->choices ? k->choices : "", v)) {
            snprintf(why, len, "must be one of %s", k->choices ? k->choices : "(none)");
            return -1;
        }
        return 0;
    case CONFIG_HOSTPORT: {
        char host[CONFIG_HOST_MAX];
        uint16_t port;
        if ((k->flags & CONFIG_OFF) && (!v[0] || strcmp(v, "off") == 0))
            return 0;
        if (config_parse_hostport(v, host, sizeof host, &port) < 0) {
            snprintf(why, len, "not HOST:PORT or [IPv6]:PORT with a port 0..65535%s",
                     k->flags & CONFIG_OFF ? " (or off)" : "");
            return -1;
        }
        return 0;
    }
    case CONFIG_ADDR: {
        unsigned char a[16];
        if (inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1) {
            snprintf(why, len, "not a numeric IPv4 or IPv6 address");
            return -1;
        }
        return 0;
    }
    case CONFIG_FILE: {
        int fd = open(v, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0) {
            snprintf(why, len, "cannot open: %s", strerror(errno));
            return -1;
        }
        int rc = fstat(fd, &st);
        close(fd);
        if (rc < 0 || !S_ISREG(st.st_mode)) {
            snprintf(why, len, "not a regular file");
            return -1;
        }
        return 0;
    }
    }
    snprintf(why, len, "unknown type");
    return -1;
}

/* A wrong table is a program bug: say which row, so that the first start shows it. */
static int config_keys_valid(const struct config_key *keys)
{
    for (const struct config_key *k = keys; k && k->name; k++) {
        char why[128];
        for (const struct config_key *o = keys; o != k; o++) {
            if (strcmp(o->name, k->name) == 0 ||
                (k->flag && o->flag && !strcmp(o->flag, k->flag))) {
                fprintf(stderr, "config: key table: %s is declared twice\n", k->name);
                return -1;
            }
        }
        if ((k->type == CONFIG_ENUM) != (k->choices != NULL) ||
            ((k->type == CONFIG_UINT || k->type == CONFIG_SIZE) && k->min > k->max)) {
            fprintf(stderr, "config: key table: %s has wrong limits or choices\n", k->name);
            return -1;
        }
        if (k->def && k->type != CONFIG_FILE && config_check(k, k->def, why, sizeof why) < 0) {
            fprintf(stderr, "config: key table: default of %s = \"%s\": %s\n", k->name, k->def,
                    why);
            return -1;
        }
    }
    return 0;
}

struct config *config_new(const char *const *sections, const struct config_key *keys)
{
    if (config_keys_valid(keys) < 0)
        return NULL;
    struct config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    cfg->keys = keys;
    size_t n = 0;
    while (sections && sections[n])
        n++;
    cfg->sections = calloc(n + 1, sizeof *cfg->sections);
    if (!cfg->sections) {
        free(cfg);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(cfg->sections[i] = strdup(sections[i]))) {
            config_free(cfg);
            return NULL;
        }
        cfg->n_sections++;
    }
    return cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_sections; i++)
        free(cfg->sections[i]);
    free(cfg->sections);
    for (size_t i = 0; i < cfg->n_items; i++) {
        free(cfg->items[i].key);
        free(cfg->items[i].value);
    }
    free(cfg->items);
    for (size_t i = 0; i < cfg->n_files; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg->errors);
    free(cfg);
}

static int config_add(struct config *cfg, const struct config_item *it)
{
    struct config_item *v = realloc(cfg->items, (cfg->n_items + 1) * sizeof *v);
    if (!v)
        return -1;
    cfg->items = v;
    char *k = strdup(it->key), *val = strdup(it->value);
    if (!k || !val) {
        free(k);
        free(val);
        return -1;
    }
    v[cfg->n_items] = *it;
    v[cfg->n_items].key = k;
    v[cfg->n_items].value = val;
    cfg->n_items++;
    return 0;
}

/* --- reading a file -------------------------------------------------------------------------
 * inih (Debian 12: release 55) passes no line number to the handler unless built with
 * INI_HANDLER_LINENO, which Debian's build is not. The file is therefore fed to inih through
 * ini_parse_stream() with a reader that hands over exactly one line per call, so the reader's
 * count is the line of the key being handled. The reader also looks at each raw line for what
 * inih accepts silently: an unknown section header, an indented line (inih appends it to the
 * previous value) and a line too long for inih's buffer (inih would split it in two). */
struct config_reader {
    struct config *cfg;
    FILE *f;
    const char *path; /* as stored in cfg->files */
    int load;
    int line;          /* the line last handed to inih */
    bool continuation; /* that line continues the previous key's value */
    bool after_key;    /* a key line was seen since the last section header */
    bool reading;      /* the current section is one the process reads (or none yet) */
    int pending;       /* a key line that inih has not handled yet (0: none) */
    bool read_error;
};

/* inih calls the handler for every KEY = VALUE line it accepts; a key line it did not hand over
 * before asking for the next line was refused. */
static void config_reader_settle(struct config_reader *r)
{
    if (r->pending)
        config_error(r->cfg, "%s:%d: syntax error (expected [section], KEY = VALUE or a comment)",
                     r->path, r->pending);
    r->pending = 0;
}

static char *config_read_line(char *str, int num, void *stream)
{
    struct config_reader *r = stream;
    config_reader_settle(r);
    if (num < 3 || !fgets(str, num, r->f)) {
        if (ferror(r->f))
            r->read_error = true;
        return NULL;
    }
    r->line++;
    r->continuation = false;
    size_t len = strlen(str);
    int c;
    if (len && str[len - 1] != '\n' && (c = fgetc(r->f)) != EOF && c != '\n') {
        /* Longer than inih's buffer, which would split it: drop the rest and hand over an empty
         * line instead. (A line that just fills the buffer, its newline consumed here, is
         * whole.) */
        while ((c = fgetc(r->f)) != EOF && c != '\n')
            ;
        if (r->reading)
            config_error(r->cfg, "%s:%d: line longer than %d characters", r->path, r->line,
                         num - 1);
        str[0] = '\n';
        str[1] = '\0';
        return str;
    }
    const char *s = str;
    if (r->line == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;
    const char *start = s + strspn(s, " \t\r\n\f\v");
    if (!*start || *start == ';' || *start == '#')
        return str;
    if (start > s && r->after_key) {
        r->continuation = true; /* inih's multi-line value, as in Python's configparser */
        return str;
    }
    if (*start == '[') {
        r->after_key = false;
        size_t n = strcspn(start + 1, "]\r\n");
        if (start[1 + n] == ']') {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(n < 127 ? n : 127), start + 1);
            r->reading = false;
            for (size_t i = 0; i < r->cfg->n_sections; i++)
                r->reading = r->reading || strcmp(r->cfg->sections[i], name) == 0;
            if (!config_section_known(name)) {
                char known[128] = "";
                for (const char *const *k = config_known_sections; *k; k++)
                    snprintf(known + strlen(known), sizeof known - strlen(known), "%s[%s]",
                             known[0] ? ", " : "", *k);
                config_error(r->cfg, "%s:%d: unknown section [%s] (known: %s)", r->path, r->line,
                             name, known);
            }
        } else {
            config_error(r->cfg, "%s:%d: syntax error (a section header needs a closing ']')",
                         r->path, r->line);
        }
        return str;
    }
    r->after_key = true;
    r->pending = r->line;
    return str;
}

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config_reader *r = user;
    struct config *cfg = r->cfg;
    r->pending = 0;
    if (!section[0]) {
        config_error(cfg, "%s:%d: %s is outside any section", r->path, r->line, name);
        return 1;
    }
    size_t rank = 0;
    while (rank < cfg->n_sections && strcmp(cfg->sections[rank], section) != 0)
        rank++;
    if (rank == cfg->n_sections)
        return 1; /* another process's section (or an unknown one, already reported) */
    if (r->continuation) {
        config_error(cfg,
                     "%s:%d: indented line would continue the value of %s; multi-line values are "
                     "not supported (remove the indentation)",
                     r->path, r->line, name);
        return 1;
    }
    const struct config_key *k = config_key_find(cfg->keys, name);
    if (!k) {
        config_error(cfg, "%s:%d: unknown key \"%s\" in [%s]", r->path, r->line, name, section);
        return 1;
    }
    char why[256];
    if (config_check(k, value, why, sizeof why) < 0) {
        config_error(cfg, "%s:%d: %s = %s: %s", r->path, r->line, name, value, why);
        return 1;
    }
    if (!(k->flags & CONFIG_REPEAT)) {
        for (size_t i = 0; i < cfg->n_items; i++) {
            const struct config_item *it = &cfg->items[i];
            if (it->load == r->load && it->rank == (int)rank && strcmp(it->key, name) == 0) {
                config_error(cfg,
                             "%s:%d: %s is given twice in [%s] (first on line %d) and is not "
                             "repeatable",
                             r->path, r->line, name, section, it->line);
                return 1;
            }
        }
    }
    struct config_item it = {(char *)name, (char *)value, (int)rank, r->load, r->path, r->line};
    if (config_add(cfg, &it) < 0) {
        config_error(cfg, "%s:%d: out of memory", r->path, r->line);
        return 0;
    }
    return 1;
}

int config_load(struct config *cfg, const char *path, bool required, char *errbuf, size_t errlen)
{
    size_t mark = cfg->errors_len;
    unsigned errors_before = cfg->n_errors + cfg->n_dropped;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT)
            return 0;
        config_error(cfg, "%s: %s", path, strerror(errno));
        config_errors_since(cfg, mark, errbuf, errlen);
        return -1;
    }
    char **files = realloc(cfg->files, (cfg->n_files + 1) * sizeof *files);
    char *copy = strdup(path);
    if (files)
        cfg->files = files;
    if (!files || !copy) {
        free(copy);
        fclose(f);
        config_error(cfg, "%s: out of memory", path);
        config_errors_since(cfg, mark, errbuf, errlen);
        return -1;
    }
    cfg->files[cfg->n_files++] = copy;
    struct config_reader r = {
        .cfg = cfg, .f = f, .path = copy, .load = (int)cfg->n_files, .reading = true};
    errno = 0;
    int rc = ini_parse_stream(config_read_line, &r, config_ini_handler, &r);
    config_reader_settle(&r);
    /* inih stops silently at a read error (e.g. EISDIR for a directory): that is no empty file */
    int read_errno = r.read_error ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (read_errno)
        config_error(cfg, "%s: %s", path, strerror(read_errno));
    else if (rc > 0 && cfg->n_errors + cfg->n_dropped == errors_before)
        config_error(cfg, "%s:%d: syntax error", path, rc); /* one the reader did not see */
    else if (rc < 0)
        config_error(cfg, "%s: out of memory", path);
    if (cfg->n_errors + cfg->n_dropped == errors_before)
        return 0;
    config_errors_since(cfg, mark, errbuf, errlen);
    return -1;
}

int config_set_as(struct config *cfg, const char *key, const char *value, const char *as_given)
{
    char given[256];
    if (!as_given) {
        snprintf(given, sizeof given, "%s=%s", key, value);
        as_given = given;
    }
    const struct config_key *k = config_key_find(cfg->keys, key);
    if (!k) {
        config_error(cfg, "the command line: %s: unknown key \"%s\"", as_given, key);
        return -1;
    }
    char why[256];
    if (config_check(k, value, why, sizeof why) < 0) {
        config_error(cfg, "the command line: %s: %s", as_given, why);
        return -1;
    }
    struct config_item it = {(char *)key, (char *)value, (int)cfg->n_sections, 0, NULL, 0};
    if (config_add(cfg, &it) < 0) {
        config_error(cfg, "the command line: %s: out of memory", as_given);
        return -1;
    }
    return 0;
}

int config_set(struct config *cfg, const char *key, const char *value)
{
    return config_set_as(cfg, key, value, NULL);
}

int config_set_kv(struct config *cfg, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return -1;
    char *key = strndup(kv, (size_t)(eq - kv));
    if (!key)
        return -1;
    int rc = config_set(cfg, key, eq + 1);
    free(key);
    return rc;
}

/* A getter for a key that is not in the table can never see a value (setting it is refused), so
 * it would silently read its default forever: stop at the first start instead. */
static const struct config_key *config_key_need(const struct config *cfg, const char *key)
{
    const struct config_key *k = config_key_find(cfg->keys, key);
    if (!k) {
        fprintf(stderr, "config: key \"%s\" is read but missing from the key table\n", key);
        abort();
    }
    return k;
}

static const char *config_value(const struct config *cfg, const char *key)
{
    const struct config_item *best = NULL;
    for (size_t i = 0; i < cfg->n_items; i++) {
        const struct config_item *it = &cfg->items[i];
        if (strcmp(it->key, key) == 0 && (!best || it->rank >= best->rank))
            best = it;
    }
    return best ? best->value : NULL;
}

const char *config_where_key(const struct config *cfg, const char *key, char *buf, size_t len)
{
    const struct config_item *best = NULL;
    for (size_t i = 0; i < cfg->n_items; i++) {
        const struct config_item *it = &cfg->items[i];
        if (strcmp(it->key, key) == 0 && (!best || it->rank >= best->rank))
            best = it;
    }
    if (!best)
        snprintf(buf, len, "the default");
    else if (!best->file)
        snprintf(buf, len, "the command line");
    else
        snprintf(buf, len, "%s:%d", best->file, best->line);
    return buf;
}

const char *config_get(const struct config *cfg, const char *key, const char *def)
{
    config_key_need(cfg, key);
    const char *v = config_value(cfg, key);
    return v ? v : def;
}

int config_get_uint(const struct config *cfg, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = config_get(cfg, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    if (config_parse_uint(v, out) < 0) {
        log_error("config: %s = \"%s\" is not a non-negative integer", key, v);
        return -1;
    }
    return 0;
}

int config_get_size(const struct config *cfg, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = config_get(cfg, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    if (config_parse_size(v, out) < 0) {
        log_error("config: %s = \"%s\" is not a size (bytes, or with K, M, G)", key, v);
        return -1;
    }
    return 0;
}

int config_get_bool(const struct config *cfg, const char *key, bool def, bool *out)
{
    const char *v = config_get(cfg, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    if (config_parse_bool(v, out) < 0) {
        log_error("config: %s = \"%s\" is not a boolean (yes/no)", key, v);
        return -1;
    }
    return 0;
}

static const struct config_key *config_key_typed(const struct config *cfg, const char *key,
                                                 bool numeric, bool boolean)
{
    const struct config_key *k = config_key_need(cfg, key);
    bool is_num = k->type == CONFIG_UINT || k->type == CONFIG_SIZE;
    bool is_bool = k->type == CONFIG_BOOL;
    if (is_num != numeric || is_bool != boolean) {
        fprintf(stderr, "config: key \"%s\" is read with a getter of another type\n", key);
        abort();
    }
    return k;
}

const char *config_str(const struct config *cfg, const char *key)
{
    const struct config_key *k = config_key_typed(cfg, key, false, false);
    const char *v = config_value(cfg, key);
    return v ? v : k->def;
}

uint64_t config_u64(const struct config *cfg, const char *key)
{
    const struct config_key *k = config_key_typed(cfg, key, true, false);
    const char *v = config_value(cfg, key);
    if (!v)
        v = k->def;
    uint64_t n = 0;
    if (v)
        (void)(k->type == CONFIG_UINT ? config_parse_uint(v, &n) : config_parse_size(v, &n));
    return n;
}

bool config_bool(const struct config *cfg, const char *key)
{
    const struct config_key *k = config_key_typed(cfg, key, false, true);
    const char *v = config_value(cfg, key);
    if (!v)
        v = k->def;
    bool b = false;
    if (v)
        (void)config_parse_bool(v, &b);
    return b;
}

int config_each(const struct config *cfg, const char *key, int (*fn)(void *cls, const char *value),
                void *cls)
{
    config_key_need(cfg, key);
    for (int rank = 0; rank <= (int)cfg->n_sections; rank++) {
        for (size_t i = 0; i < cfg->n_items; i++) {
            const struct config_item *it = &cfg->items[i];
            if (it->rank != rank || strcmp(it->key, key) != 0)
                continue;
            int rc = fn(cls, it->value);
            if (rc)
                return rc;
        }
    }
    return 0;
}

const char *config_where(const struct config *cfg, const char *key, const char *value, char *out,
                         size_t len)
{
    const struct config_item *found = NULL;
    for (size_t i = 0; i < cfg->n_items && !found; i++)
        if (cfg->items[i].value == value && strcmp(cfg->items[i].key, key) == 0)
            found = &cfg->items[i];
    if (!found)
        snprintf(out, len, "the default");
    else if (found->file)
        snprintf(out, len, "%s:%d", found->file, found->line);
    else
        snprintf(out, len, "the command line");
    return out;
}
