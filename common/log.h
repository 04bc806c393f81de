/* log — small structured logger for the daemons (library modules never log).
 *
 * One line per event: "2026-11-26T06:50:00.123Z ingestd[123] warn: message".
 * Written with one write(2) so lines from several processes sharing a file
 * do not interleave.
 */
#ifndef MI_LOG_H
#define MI_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_LEVEL_MAX };

/* file NULL or "-" or "stdout": stdout. Returns 0 or -errno. */
int log_open(const char *ident, const char *file, enum log_level level);
/* "error", "warn", "info", "debug" -> level, or -1. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether a message of this level would be written (skip costly formatting). */
int log_enabled(enum log_level lvl);

/* A stage that cannot start (bad configuration, permissions, a resource
 * held by another pipeline) exits with this status: restarting it cannot
 * help, so run/supervise stops the pipeline after a few in a row and the
 * systemd units do not restart on it (RestartPreventExitStatus). */
#define MI_EXIT_STARTUP 2

/* Writes msg as the stage's last words to $MI_STATUS_FILE when set (run/
 * supervise reads it to say why it stopped the pipeline).  Every error
 * logged goes there too. */
void log_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#endif
