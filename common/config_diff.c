/* What a configuration reload changed (config.h): the keys whose values differ between the
 * running configuration and a fresh one, and the warning for keys that need a restart. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "config_internal.h"
#include "log.h"

struct config_joined {
    char *s;
    size_t len;
};

static int config_join(void *cls, const char *value)
{
    struct config_joined *j = cls;
    size_t n = strlen(value);
    char *s = realloc(j->s, j->len + n + 2);
    if (!s)
        return -1;
    memcpy(s + j->len, value, n);
    s[j->len + n] = '\n';
    s[j->len + n + 1] = '\0';
    j->s = s;
    j->len += n + 1;
    return 0;
}

/* The effective value of one key as text (every value of a repeatable one, in order), for
 * comparison only. Returns a malloc'd string, or NULL when unset or out of memory. */
static char *config_value_text(const struct config *cfg, const struct config_key *k)
{
    if (k->flags & CONFIG_REPEAT) {
        struct config_joined j = {NULL, 0};
        config_each(cfg, k->name, config_join, &j);
        return j.s;
    }
    const char *v = config_get(cfg, k->name, k->def);
    if (!v)
        return NULL;
    /* Numbers and booleans compare by value: "1M" is "1048576", "yes" is "true". */
    char num[24];
    uint64_t u = 0;
    bool b = false;
    if ((k->type == CONFIG_UINT && config_parse_uint(v, &u) == 0) ||
        (k->type == CONFIG_SIZE && config_parse_size(v, &u) == 0)) {
        snprintf(num, sizeof num, "%" PRIu64, u);
        return strdup(num);
    }
    if (k->type == CONFIG_BOOL && config_parse_bool(v, &b) == 0)
        return strdup(b ? "true" : "false");
    return strdup(v);
}

size_t config_diff(const struct config *a, const struct config *b,
                   void (*fn)(void *cls, const char *key), void *cls)
{
    size_t n = 0;
    for (const struct config_key *k = a->keys; k && k->name; k++) {
        char *va = config_value_text(a, k), *vb = config_value_text(b, k);
        if (!va != !vb || (va && strcmp(va, vb) != 0)) {
            n++;
            if (fn)
                fn(cls, k->name);
        }
        free(va);
        free(vb);
    }
    return n;
}

struct config_restart {
    const char *const *lists[2];
};

static bool config_listed(const char *const *list, const char *key)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return true;
    return false;
}

static void config_restart_key(void *cls, const char *key)
{
    const struct config_restart *r = cls;
    if (!config_listed(r->lists[0], key) && !config_listed(r->lists[1], key))
        log_warn("reload: %s changed; it needs a restart (the running value stays)", key);
}

void config_warn_restart(const struct config *run, const struct config *fresh,
                         const char *const *reloadable, const char *const *also)
{
    struct config_restart r = {{reloadable, also}};
    config_diff(run, fresh, config_restart_key, &r);
}
