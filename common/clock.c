#include "common/clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int digits(const char **s, int n, int *ret)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*s)[i]))
			return -1;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	*ret = v;
	return 0;
}

static int expect(const char **s, char c)
{
	if (**s != c)
		return -1;
	(*s)++;
	return 0;
}

int clock_parse_rfc3339(const char *s, uint64_t *ret_ns)
{
	int Y, M, D, h, m, sec;
	if (digits(&s, 4, &Y) || expect(&s, '-') || digits(&s, 2, &M) || expect(&s, '-') ||
	    digits(&s, 2, &D))
		return -EINVAL;
	if (*s != 'T' && *s != 't' && *s != ' ')
		return -EINVAL;
	s++;
	if (digits(&s, 2, &h) || expect(&s, ':') || digits(&s, 2, &m) || expect(&s, ':') ||
	    digits(&s, 2, &sec))
		return -EINVAL;
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (M < 1 || M > 12 || D < 1 || h > 23 || m > 59 || sec > 60 || Y < 1970)
		return -EINVAL;
	int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
	if (D > mdays[M - 1] + (M == 2 && leap))
		return -EINVAL;
	uint64_t frac = 0;
	if (*s == '.') {
		s++;
		int n = 0;
		while (isdigit((unsigned char)*s)) {
			if (n < 9) {
				frac = frac * 10 + (uint64_t)(*s - '0');
				n++;
			}
			s++;
		}
		if (n == 0)
			return -EINVAL;
		while (n++ < 9)
			frac *= 10;
	}
	long off = 0;
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int sign = *s == '-' ? -1 : 1, oh, om;
		s++;
		if (digits(&s, 2, &oh) || expect(&s, ':') || digits(&s, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
		off = sign * (oh * 3600L + om * 60L);
	} else {
		return -EINVAL;
	}
	if (*s)
		return -EINVAL;
	/* days from civil (Howard Hinnant's algorithm): no timegm/TZ dependence */
	int y = Y - (M <= 2);
	int era = y / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (unsigned)((153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1);
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	long days = (long)era * 146097 + (long)doe - 719468;
	long secs = days * 86400L + h * 3600L + m * 60L + sec - off;
	if (secs < 0 || (uint64_t)secs > (UINT64_MAX - frac) / 1000000000ull)
		return -EINVAL;
	*ret_ns = (uint64_t)secs * 1000000000ull + frac;
	return 0;
}

void clock_format_rfc3339(uint64_t ns, char *buf, unsigned len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000ull));
}

int clock_parse_time(const char *s, uint64_t now_ns, uint64_t *ret_ns)
{
	if (!strcmp(s, "now")) {
		*ret_ns = now_ns;
		return 0;
	}
	if (s[0] != '-' && s[0] != '+')
		return clock_parse_rfc3339(s, ret_ns);
	const char *p = s + 1;
	uint64_t n = 0;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		if (n > 1000000000ull)
			return -EINVAL;
		n = n * 10 + (uint64_t)(*p++ - '0');
	}
	uint64_t unit;
	switch (*p++) {
	case 's': unit = 1000000000ull; break;
	case 'm': unit = 60 * 1000000000ull; break;
	case 'h': unit = 3600 * 1000000000ull; break;
	case 'd': unit = 86400 * 1000000000ull; break;
	default: return -EINVAL;
	}
	if (*p || n > UINT64_MAX / unit)
		return -EINVAL;
	uint64_t d = n * unit;
	if (s[0] == '-') {
		if (d > now_ns)
			return -EINVAL;
		*ret_ns = now_ns - d;
	} else {
		if (d > UINT64_MAX - now_ns)
			return -EINVAL;
		*ret_ns = now_ns + d;
	}
	return 0;
}
