#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

struct config_item {
    char *key;
    char *value;
    int rank; /* index of the section it came from; overrides rank above every section */
};

struct config {
    char **sections;
    size_t n_sections;
    struct config_item *items;
    size_t n_items;
};

struct config *config_new(const char *const *sections)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
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
    free(cfg);
}

static int config_add(struct config *cfg, const char *key, const char *value, int rank)
{
    struct config_item *v = realloc(cfg->items, (cfg->n_items + 1) * sizeof *v);
    if (!v)
        return -1;
    cfg->items = v;
    char *k = strdup(key), *val = strdup(value);
    if (!k || !val) {
        free(k);
        free(val);
        return -1;
    }
    v[cfg->n_items++] = (struct config_item){k, val, rank};
    return 0;
}

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config *cfg = user;
    for (size_t i = 0; i < cfg->n_sections; i++) {
        if (strcmp(cfg->sections[i], section) == 0)
            return config_add(cfg, name, value, (int)i) == 0;
    }
    return 1; /* other processes' sections */
}

int config_load(struct config *cfg, const char *path, bool required, char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT)
            return 0;
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_file(f, config_ini_handler, cfg);
    /* inih stops silently at a read error (e.g. EISDIR for a directory): that is no empty file */
    int read_errno = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (read_errno) {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(read_errno));
        return -1;
    }
    if (rc != 0) {
        snprintf(errbuf, errlen, "%s:%d: syntax error", path, rc);
        return -1;
    }
    return 0;
}

int config_set(struct config *cfg, const char *key, const char *value)
{
    return config_add(cfg, key, value, (int)cfg->n_sections);
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

const char *config_get(const struct config *cfg, const char *key, const char *def)
{
    const struct config_item *best = NULL;
    for (size_t i = 0; i < cfg->n_items; i++) {
        const struct config_item *it = &cfg->items[i];
        if (strcmp(it->key, key) == 0 && (!best || it->rank >= best->rank))
            best = it;
    }
    return best ? best->value : def;
}

/* strtoull() skips white space and accepts a sign ("-1" wraps to a huge value); a value must
 * start with a digit. Returns -1 when there is no digit or the number overflows. */
static int config_strtou64(const char *v, char **end, unsigned long long *n)
{
    *end = (char *)v;
    if (!isdigit((unsigned char)v[0]))
        return -1;
    errno = 0;
    *n = strtoull(v, end, 10);
    return errno ? -1 : 0;
}

int config_get_uint(const struct config *cfg, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = config_get(cfg, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    unsigned long long n;
    if (config_strtou64(v, &end, &n) < 0 || *end) {
        log_error("config: %s = \"%s\" is not a non-negative integer", key, v);
        return -1;
    }
    *out = n;
    return 0;
}

int config_get_size(const struct config *cfg, const char *key, uint64_t def, uint64_t *out)
{
    const char *v = config_get(cfg, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    unsigned long long n = 0;
    int bad = config_strtou64(v, &end, &n);
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024ull * 1024 * 1024, end++;
    if (bad || *end || n > UINT64_MAX / mult) {
        log_error("config: %s = \"%s\" is not a size (bytes, or with K, M, G)", key, v);
        return -1;
    }
    *out = n * mult;
    return 0;
}

int config_get_bool(const struct config *cfg, const char *key, bool def, bool *out)
{
    const char *v = config_get(cfg, key, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") ||
        !strcasecmp(v, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") ||
        !strcasecmp(v, "off")) {
        *out = false;
        return 0;
    }
    log_error("config: %s = \"%s\" is not a boolean (yes/no)", key, v);
    return -1;
}

int config_each(const struct config *cfg, const char *key, int (*fn)(void *cls, const char *value),
                void *cls)
{
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

int config_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *end;
    unsigned long long p;
    if (config_strtou64(colon + 1, &end, &p) < 0 || *end || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

struct config_arg {
    const char *name;  /* flag name, or "" for --option */
    const char *key;   /* config key, NULL for program values */
    const char *value; /* borrowed from argv */
};

struct config_args {
    const char *config_path;
    struct config_arg *v;
    size_t n;
};

void config_args_free(struct config_args *a)
{
    if (!a)
        return;
    free(a->v);
    free(a);
}

enum config_args_rc config_args_parse(int argc, char **argv, const struct config_flag *flags,
                                      struct config_args **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    size_t nf = 0;
    while (flags[nf].name)
        nf++;
    /* getopt_long's table: the program's flags, then config, option, help */
    struct option *opts = calloc(nf + 4, sizeof *opts);
    struct config_args *a = calloc(1, sizeof *a);
    if (a)
        a->v = calloc((size_t)argc + 1, sizeof *a->v);
    if (!opts || !a || !a->v) {
        free(opts);
        config_args_free(a);
        snprintf(errbuf, errlen, "out of memory");
        return CONFIG_ARGS_USAGE;
    }
    for (size_t i = 0; i < nf; i++)
        opts[i] = (struct option){flags[i].name, required_argument, NULL, 256 + (int)i};
    opts[nf] = (struct option){"config", required_argument, NULL, 'c'};
    opts[nf + 1] = (struct option){"option", required_argument, NULL, 'o'};
    opts[nf + 2] = (struct option){"help", no_argument, NULL, 'h'};
    enum config_args_rc rc = CONFIG_ARGS_OK;
    int opt;
    optind = 1;
    opterr = 0;
    while (rc == CONFIG_ARGS_OK && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            rc = CONFIG_ARGS_HELP;
        } else if (opt == 'c') {
            a->config_path = optarg;
        } else if (opt == 'o') {
            a->v[a->n++] = (struct config_arg){"", NULL, optarg};
        } else if (opt >= 256 && opt < 256 + (int)nf) {
            const struct config_flag *f = &flags[opt - 256];
            a->v[a->n++] = (struct config_arg){f->name, f->key, optarg};
        } else {
            snprintf(errbuf, errlen, "unknown option or missing value: %s",
                     optind > 0 && optind <= argc ? argv[optind - 1] : "?");
            rc = CONFIG_ARGS_USAGE;
        }
    }
    if (rc == CONFIG_ARGS_OK && optind < argc) {
        snprintf(errbuf, errlen, "unexpected argument \"%s\"", argv[optind]);
        rc = CONFIG_ARGS_USAGE;
    }
    free(opts);
    if (rc != CONFIG_ARGS_OK) {
        config_args_free(a);
        return rc;
    }
    *out = a;
    return CONFIG_ARGS_OK;
}

const char *config_args_value(const struct config_args *a, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].name, name) == 0)
            v = a->v[i].value;
    return v;
}

struct config *config_args_load(const struct config_args *a, const char *const *sections,
                                char *errbuf, size_t errlen)
{
    struct config *cfg = config_new(sections);
    if (!cfg) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    if (a->config_path && config_load(cfg, a->config_path, true, errbuf, errlen) < 0) {
        config_free(cfg);
        return NULL;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct config_arg *s = &a->v[i];
        if (s->name[0] && !s->key)
            continue; /* a program value, not a key */
        int rc = s->name[0] ? config_set(cfg, s->key, s->value) : config_set_kv(cfg, s->value);
        if (rc < 0) {
            snprintf(errbuf, errlen, "--option needs KEY=VALUE, got \"%s\"", s->value);
            config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}
