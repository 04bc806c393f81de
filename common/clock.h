/* clock — time helpers. */
#ifndef MI_CLOCK_H
#define MI_CLOCK_H
#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline struct timespec clock_ts_from_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull) };
	return ts;
}

/* Parses RFC 3339 ("2024-05-01T12:00:00.123Z", "+02:00" offsets) into ns
 * since the epoch.  Returns 0 or -EINVAL. */
int clock_parse_rfc3339(const char *s, uint64_t *ret_ns);
/* A time as a user gives it on a command line: RFC 3339, "now", or
 * relative to now_ns as -N or +N with a unit (s, m, h, d: "-15m", "-2h").
 * Returns 0 or -EINVAL. */
int clock_parse_time(const char *s, uint64_t now_ns, uint64_t *ret_ns);
/* Formats ns as RFC 3339 UTC with nanoseconds into buf (>= 32 bytes). */
void clock_format_rfc3339(uint64_t ns, char *buf, unsigned len);
#endif
