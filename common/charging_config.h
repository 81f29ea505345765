/* The keys of the [charging] section (docs/charging.md), read by every process of the family:
 * each XDMS delivers the charging records of the events it commits or serves; the proxy commits
 * none, and only checks the section. Part of a process's key table (struct config_key). */
#ifndef XDM_CHARGING_CONFIG_H
#define XDM_CHARGING_CONFIG_H

#include "config.h"

/* Longest Diameter identity or realm (RFC 6733 §4.3.1 DiameterIdentity, a FQDN). */
#define CHARGING_IDENTITY_MAX 255

#define CHARGING_CONFIG_KEYS                                                                       \
    {                                                                                              \
        "cdr_dir",                                                                                 \
        CONFIG_STR,                                                                                \
        0,                                                                                         \
        4096,                                                                                      \
        NULL,                                                                                      \
        NULL,                                                                                      \
        0,                                                                                         \
        NULL,                                                                                      \
        "charging: directory of the CDR files (*.jsonl); unset: no CDR files"},                    \
        {"cdr_rotate_bytes",                                                                       \
         CONFIG_SIZE,                                                                              \
         1024,                                                                                     \
         1ull << 30,                                                                               \
         "16M",                                                                                    \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: a CDR file is closed and a new one begun at this size"},                       \
        {"cdr_rotate_age",                                                                         \
         CONFIG_UINT,                                                                              \
         1,                                                                                        \
         31536000,                                                                                 \
         "3600",                                                                                   \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: seconds after which a CDR file is closed and a new one begun"},                \
        {"rf_config",                                                                              \
         CONFIG_FILE,                                                                              \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: freeDiameter configuration of the Rf client; unset: no Diameter"},             \
        {"rf_destination_realm",                                                                   \
         CONFIG_STR,                                                                               \
         0,                                                                                        \
         CHARGING_IDENTITY_MAX,                                                                    \
         NULL,                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: Destination-Realm of the charging function (required with rf_config)"},        \
        {"rf_destination_host",                                                                    \
         CONFIG_STR,                                                                               \
         0,                                                                                        \
         CHARGING_IDENTITY_MAX,                                                                    \
         NULL,                                                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: Destination-Host of the charging function (default: none, realm routing)"},    \
        {"rf_service_context",                                                                     \
         CONFIG_STR,                                                                               \
         1,                                                                                        \
         255,                                                                                      \
         "xdm@openmobilealliance.org",                                                             \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: Service-Context-Id of every Accounting-Request"},                              \
        {"rf_answer_timeout_ms",                                                                   \
         CONFIG_UINT,                                                                              \
         100,                                                                                      \
         600000,                                                                                   \
         "5000",                                                                                   \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: wait for an Accounting-Answer before the record counts as not delivered"},     \
        {"charging_retry_min_ms",                                                                  \
         CONFIG_UINT,                                                                              \
         10,                                                                                       \
         3600000,                                                                                  \
         "1000",                                                                                   \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: first wait before a failed delivery is tried again (doubles each time)"},      \
        {"charging_retry_max_ms",                                                                  \
         CONFIG_UINT,                                                                              \
         10,                                                                                       \
         3600000,                                                                                  \
         "60000",                                                                                  \
         NULL,                                                                                     \
         0,                                                                                        \
         NULL,                                                                                     \
         "charging: longest wait between two delivery attempts"},                                  \
    {                                                                                              \
        "charging_queue_max", CONFIG_UINT, 1, 100000000, "1000000", NULL, 0, NULL,                 \
            "charging: records a queue holds; further events are logged, counted and not queued"   \
    }

#endif
