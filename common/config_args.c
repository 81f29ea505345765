/* Command lines of the servers and tools (config.h): --config, --option key=value, --set
 * overrides, --check-config, --help; and loading the one configuration file with them. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "config_internal.h"
#include "log.h"

struct config_arg {
    const char *name;  /* option name without "--"; "option" for --option */
    const char *key;   /* config key, NULL for program values and --option */
    const char *value; /* borrowed from argv */
};

struct config_args {
    const struct config_key *keys;
    const char *config_path;
    bool check_only;
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

/* getopt_long values: program values from 256, key flags from 512, built-ins below 256. */
enum { CONFIG_OPT_VALUE = 256, CONFIG_OPT_KEY = 512, CONFIG_OPT_CHECK = 'k' };

enum config_args_rc config_args_parse(int argc, char **argv, const char *const *program_values,
                                      const struct config_key *keys, struct config_args **out,
                                      char *errbuf, size_t errlen)
{
    *out = NULL;
    size_t nv = 0, nk = 0;
    while (program_values && program_values[nv])
        nv++;
    while (keys && keys[nk].name)
        nk++;
    /* getopt_long's table: program values, key flags, then config, option, check-config, help */
    struct option *opts = calloc(nv + nk + 5, sizeof *opts);
    struct config_args *a = calloc(1, sizeof *a);
    if (a)
        a->v = calloc((size_t)argc + 1, sizeof *a->v);
    if (!opts || !a || !a->v) {
        free(opts);
        config_args_free(a);
        snprintf(errbuf, errlen, "out of memory");
        return CONFIG_ARGS_USAGE;
    }
    a->keys = keys;
    size_t n = 0;
    for (size_t i = 0; i < nv; i++)
        opts[n++] =
            (struct option){program_values[i], required_argument, NULL, CONFIG_OPT_VALUE + (int)i};
    for (size_t i = 0; i < nk; i++)
        if (keys[i].flag)
            opts[n++] =
                (struct option){keys[i].flag, required_argument, NULL, CONFIG_OPT_KEY + (int)i};
    opts[n++] = (struct option){"config", required_argument, NULL, 'c'};
    opts[n++] = (struct option){"option", required_argument, NULL, 'o'};
    opts[n++] = (struct option){"check-config", no_argument, NULL, CONFIG_OPT_CHECK};
    opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    enum config_args_rc rc = CONFIG_ARGS_OK;
    int opt;
    optind = 1;
    opterr = 0;
    while (rc == CONFIG_ARGS_OK && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            rc = CONFIG_ARGS_HELP;
        } else if (opt == 'c') {
            if (a->config_path) {
                snprintf(errbuf, errlen, "--config given twice (\"%s\", \"%s\")", a->config_path,
                         optarg);
                rc = CONFIG_ARGS_USAGE;
            }
            a->config_path = optarg;
        } else if (opt == 'o') {
            a->v[a->n++] = (struct config_arg){"option", NULL, optarg};
        } else if (opt == CONFIG_OPT_CHECK) {
            a->check_only = true;
        } else if (opt >= CONFIG_OPT_VALUE && opt < CONFIG_OPT_VALUE + (int)nv) {
            a->v[a->n++] =
                (struct config_arg){program_values[opt - CONFIG_OPT_VALUE], NULL, optarg};
        } else if (opt >= CONFIG_OPT_KEY && opt < CONFIG_OPT_KEY + (int)nk) {
            const struct config_key *k = &keys[opt - CONFIG_OPT_KEY];
            a->v[a->n++] = (struct config_arg){k->flag, k->name, optarg};
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
        if (!a->v[i].key && strcmp(a->v[i].name, name) == 0)
            v = a->v[i].value;
    return v;
}

bool config_args_check_only(const struct config_args *a)
{
    return a->check_only;
}

struct config *config_args_load(const struct config_args *a, const char *const *sections,
                                char *errbuf, size_t errlen)
{
    struct config *cfg = config_new(sections, a->keys);
    if (!cfg) {
        snprintf(errbuf, errlen, "cannot set up the configuration (see above)");
        return NULL;
    }
    char ignored[1];
    if (a->config_path)
        config_load(cfg, a->config_path, true, ignored, sizeof ignored);
    for (size_t i = 0; i < a->n; i++) {
        const struct config_arg *s = &a->v[i];
        char given[512];
        if (s->key) {
            snprintf(given, sizeof given, "--%s %s", s->name, s->value);
            config_set_as(cfg, s->key, s->value, given);
            continue;
        }
        if (strcmp(s->name, "option") != 0)
            continue; /* a program value, not a key */
        const char *eq = strchr(s->value, '=');
        snprintf(given, sizeof given, "--option %s", s->value);
        if (!eq || eq == s->value) {
            config_error(cfg, "the command line: %s: needs KEY=VALUE", given);
            continue;
        }
        char *key = strndup(s->value, (size_t)(eq - s->value));
        if (!key || config_set_as(cfg, key, eq + 1, given) < 0) {
            free(key);
            continue;
        }
        free(key);
    }
    if (config_errors(cfg)[0]) {
        config_errors_since(cfg, 0, errbuf, errlen);
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

void config_keys_usage(FILE *f, const struct config_key *keys)
{
    for (const struct config_key *k = keys; k && k->name; k++)
        fprintf(f, "  %-24s %s%s%s%s%s%s%s\n", k->name, k->help, k->choices ? ": " : "",
                k->choices ? k->choices : "", k->def ? " (default " : "", k->def ? k->def : "",
                k->def ? ")" : "", k->flags & CONFIG_REPEAT ? " [repeatable]" : "");
}
