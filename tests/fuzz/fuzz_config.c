/* Fuzz target for the configuration file parser (common/config.c with inih; docs/configuration.md):
 * config_load() of a file with every key an XDMS knows (xdms/main_keys.c), read for the sections
 * [charging], [xdms] and [presence], then every key through its typed getter, as a process does
 * at start. A file config_load() accepts has values that pass their own checks, so no getter may
 * fail on it; a refused file names its problems. Input: the file's bytes. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "main_keys.h"

static char fuzz_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_path[0]) {
        /* One scratch file per process, in memory where possible; removed at exit. */
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_path, sizeof fuzz_path, "%s/xdm-fuzz-config-%ld.conf", dir, (long)getpid());
    }
    FILE *f = fopen(fuzz_path, "wb");
    if (!f)
        return 0;
    size_t w = fwrite(data, 1, size, f);
    fclose(f);
    if (w != size)
        goto out;

    static const char *const sections[] = {"charging", "xdms", "presence", NULL};
    struct config *cfg = config_new(sections, main_keys);
    FUZZ_CHECK(cfg != NULL);
    char errbuf[2048];
    errbuf[0] = '\0';
    int rc = config_load(cfg, fuzz_path, true, errbuf, sizeof errbuf);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_CHECK(config_errors(cfg)[0] == '\0');
        for (const struct config_key *k = main_keys; k->name; k++) {
            switch (k->type) {
            case CONFIG_UINT:
            case CONFIG_SIZE: {
                uint64_t v = config_u64(cfg, k->name);
                if (config_get(cfg, k->name, NULL))
                    FUZZ_CHECK(v >= k->min && v <= k->max);
                break;
            }
            case CONFIG_BOOL:
                (void)config_bool(cfg, k->name);
                break;
            case CONFIG_STR:
            case CONFIG_ENUM:
            case CONFIG_HOSTPORT:
            case CONFIG_ADDR:
            case CONFIG_FILE: {
                const char *v = config_str(cfg, k->name);
                if (v && k->type == CONFIG_STR && k->max > 0)
                    FUZZ_CHECK(strlen(v) <= k->max);
                if (v && k->type == CONFIG_HOSTPORT && v[0] && strcmp(v, "off") != 0) {
                    char host[CONFIG_HOST_MAX];
                    uint16_t port;
                    FUZZ_CHECK(config_parse_hostport(v, host, sizeof host, &port) == 0);
                }
                break;
            }
            }
        }
    } else {
        FUZZ_CHECK(errbuf[0] != '\0' && config_errors(cfg)[0] != '\0');
    }
    /* A command-line override on top of the file, as --option does. */
    (void)config_set_kv(cfg, "log_level=debug");
    config_free(cfg);
out:
    unlink(fuzz_path);
    return 0;
}
