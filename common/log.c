#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"

static struct {
	const char *ident;
	int fd;
	enum log_level level;
} L = { "module-ingest", 1, LOG_INFO };

static const char *const level_names[LOG_LEVEL_MAX] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *s)
{
	for (int i = 0; i < LOG_LEVEL_MAX; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	return -1;
}

int log_open(const char *ident, const char *file, enum log_level level)
{
	L.ident = ident;
	L.level = level;
	if (!file || !*file || !strcmp(file, "-") || !strcmp(file, "stdout")) {
		L.fd = 1;
		return 0;
	}
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	L.fd = fd;
	return 0;
}

/* Errors are rare: the file is opened anew for each, so it always holds
 * the last one whole. */
static void write_status(const char *msg, size_t len)
{
	int saved = errno;
	const char *path = getenv("MI_STATUS_FILE");
	if (path && *path) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			ssize_t w = write(fd, msg, len);
			(void)w;
			close(fd);
		}
	}
	errno = saved;
}

int log_enabled(enum log_level lvl)
{
	return lvl <= L.level;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	if (lvl > L.level)
		return;
	int saved = errno;
	char buf[2048], ts[40];
	clock_format_rfc3339(clock_real_ns(), ts, sizeof(ts));
	ts[23] = 'Z';   /* milliseconds are enough in a log line */
	ts[24] = 0;
	int n = snprintf(buf, sizeof(buf), "%s %s[%d] %s: ", ts, L.ident, (int)getpid(),
			 level_names[lvl]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	ssize_t w = write(L.fd, buf, len);
	(void)w;
	if (lvl == LOG_ERROR)
		write_status(buf + n, len - (size_t)n);
	errno = saved;
}

void log_status(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	size_t len = (size_t)m < sizeof(buf) - 2 ? (size_t)m : sizeof(buf) - 2;
	buf[len++] = '\n';
	write_status(buf, len);
}
