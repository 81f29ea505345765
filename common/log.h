/* Line-oriented logging to stderr: "<time> <level> <prog>: message". Thread-safe (one write(2) per
 * line). Log once, where an error is answered. */
#ifndef XDM_LOG_H
#define XDM_LOG_H

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_init(const char *prog, enum log_level level);
/* Changes the verbosity while threads log (a configuration reload). */
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *s, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An event the operator caused and waits for (the outcome of a reload): tagged INFO, written
 * whatever the level. */
void log_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
