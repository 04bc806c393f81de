/* test_clock — RFC 3339 parsing and formatting (common/clock.h).
 * timegm() is the oracle for random dates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

#define NS 1000000000ull
#define UNTOUCHED 0xDEADBEEFCAFEF00Dull

static uint64_t rng_state = 0xC10CC10CC10Cull;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t parse_ok(const char *s)
{
	uint64_t ns = UNTOUCHED;
	int r = clock_parse_rfc3339(s, &ns);
	if (r)
		fail_msg("'%s' refused (%d)", s, r);
	return ns;
}

static void assert_refused(const char *s)
{
	uint64_t ns = UNTOUCHED;
	int r = clock_parse_rfc3339(s, &ns);
	if (r != -EINVAL)
		fail_msg("'%s' accepted as %llu (r=%d)", s, (unsigned long long)ns, r);
	assert_int_equal(ns, UNTOUCHED);       /* written only on success */
}

static void test_parse_utc_z(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(parse_ok("1970-01-01T00:00:01Z"), NS);
	assert_int_equal(parse_ok("2024-05-01T12:00:00Z"), 1714564800ull * NS);
	assert_int_equal(parse_ok("2000-02-29T00:00:00Z"), 951782400ull * NS);
	assert_int_equal(parse_ok("2024-12-31T23:59:59Z"), 1735689599ull * NS);
	/* 't', 'z' and a space separator are accepted */
	assert_int_equal(parse_ok("2024-05-01t12:00:00z"), 1714564800ull * NS);
	assert_int_equal(parse_ok("2024-05-01 12:00:00Z"), 1714564800ull * NS);
}

static void test_parse_fraction_any_digits(void **state)
{
	(void)state;
	const uint64_t base = 1714564800ull * NS;
	static const struct { const char *frac; uint64_t ns; } t[] = {
		{ ".1", 100000000 }, { ".12", 120000000 }, { ".123", 123000000 },
		{ ".1234", 123400000 }, { ".12345", 123450000 }, { ".123456", 123456000 },
		{ ".1234567", 123456700 }, { ".12345678", 123456780 }, { ".123456789", 123456789 },
		{ ".000000001", 1 }, { ".999999999", 999999999 }, { ".0", 0 },
		/* past 9 digits: truncated, not rounded */
		{ ".1234567891", 123456789 }, { ".9999999999999", 999999999 },
		{ ".000000000999", 0 },
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(buf, sizeof(buf), "2024-05-01T12:00:00%sZ", t[i].frac);
		assert_int_equal(parse_ok(buf), base + t[i].ns);
	}
}

static void test_parse_offsets(void **state)
{
	(void)state;
	const uint64_t noon = 1714564800ull * NS;
	assert_int_equal(parse_ok("2024-05-01T14:00:00+02:00"), noon);
	assert_int_equal(parse_ok("2024-05-01T06:30:00-05:30"), noon);
	assert_int_equal(parse_ok("2024-05-01T12:00:00+00:00"), noon);
	assert_int_equal(parse_ok("2024-05-01T12:00:00-00:00"), noon);
	assert_int_equal(parse_ok("2024-05-02T11:59:00+23:59"), noon);
	assert_int_equal(parse_ok("2024-05-01T14:00:00.5+02:00"), noon + NS / 2);
	/* an offset can move the date across a day, month and year */
	assert_int_equal(parse_ok("2023-12-31T23:00:00-01:00"), 1704067200ull * NS);
	assert_int_equal(parse_ok("1970-01-01T01:00:00+01:00"), 0);
}

static void test_parse_invalid_inputs(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "2024", "2024-05-01", "2024-05-01T", "2024-05-01T12:00:00", "2024-05-01T12:00Z",
		"2024-5-01T12:00:00Z", "2024-05-1T12:00:00Z", "24-05-01T12:00:00Z", "2024/05/01T12:00:00Z",
		"2024-05-01X12:00:00Z", "2024-05-01T12-00-00Z", "2024-13-01T00:00:00Z",
		"2024-00-01T00:00:00Z", "2024-05-00T00:00:00Z", "2024-05-32T00:00:00Z",
		"2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z", "2024-05-01T12:00:61Z",
		"2024-05-01T12:00:00.Z", "2024-05-01T12:00:00,5Z", "2024-05-01T12:00:00.12a3Z",
		"2024-05-01T12:00:00ZZ", "2024-05-01T12:00:00Z ", " 2024-05-01T12:00:00Z",
		"2024-05-01T12:00:00+02", "2024-05-01T12:00:00+0200", "2024-05-01T12:00:00+2:00",
		"2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+02:60", "2024-05-01T12:00:00 +02:00",
		"abcd-05-01T12:00:00Z", "+024-05-01T12:00:00Z", "2024-05-01T1a:00:00Z",
		/* before the epoch */
		"1969-12-31T23:59:59Z", "1970-01-01T00:00:00+00:01", "0000-01-01T00:00:00Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused(bad[i]);
}

/* A day that its month does not have is not a date. */
static void test_parse_rejects_day_past_month_end(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("2024-02-29T00:00:00Z"), 1709164800ull * NS);
	assert_int_equal(parse_ok("2024-04-30T00:00:00Z"), 1714435200ull * NS);
	assert_refused("2023-02-29T00:00:00Z");   /* fails today: read as 2023-03-01 */
	assert_refused("2024-02-30T00:00:00Z");
	assert_refused("2024-04-31T00:00:00Z");
	assert_refused("2100-02-29T00:00:00Z");
	assert_refused("2024-06-31T12:00:00Z");
}

/* u64 ns since the epoch end at 2554-07-21T23:34:33.709551615Z; anything
 * later must be refused rather than wrap to an early date. */
static void test_parse_rejects_times_past_u64_ns(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("2554-07-21T23:34:33.709551615Z"), UINT64_MAX);
	assert_refused("2554-07-21T23:34:33.709551616Z");   /* fails today: 0 */
	assert_refused("2555-01-01T00:00:00Z");
	assert_refused("9999-12-31T23:59:59Z");
}

static void test_format_known_values(void **state)
{
	(void)state;
	char buf[40];
	clock_format_rfc3339(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000000000Z");
	clock_format_rfc3339(1714564800123000000ull, buf, sizeof(buf));
	assert_string_equal(buf, "2024-05-01T12:00:00.123000000Z");
	clock_format_rfc3339(UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "2554-07-21T23:34:33.709551615Z");
	/* 31 bytes suffice (documented: >= 32); a short buffer is cut, terminated */
	clock_format_rfc3339(0, buf, 31);
	assert_int_equal(strlen(buf), 30);
	clock_format_rfc3339(0, buf, 11);
	assert_string_equal(buf, "1970-01-01");
}

static void test_format_then_parse_round_trips(void **state)
{
	(void)state;
	char buf[40];
	for (int i = 0; i < 200000; i++) {
		uint64_t ns = rng_next();
		if (i % 4 == 1)
			ns %= 4102444800ull * NS;      /* mostly before 2100 */
		else if (i % 4 == 2)
			ns -= ns % NS;                 /* whole seconds */
		clock_format_rfc3339(ns, buf, sizeof(buf));
		assert_int_equal(strlen(buf), 30);
		uint64_t back = parse_ok(buf);
		assert_int_equal(back, ns);
	}
}

/* Random dates, fractions and offsets, checked against timegm(). */
static void test_parse_matches_timegm(void **state)
{
	(void)state;
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	char buf[80], frac[16];
	for (int i = 0; i < 100000; i++) {
		int Y = 1970 + (int)(rng_next() % 531), M = 1 + (int)(rng_next() % 12);
		int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
		int D = 1 + (int)(rng_next() % (uint64_t)(mdays[M - 1] + (M == 2 && leap)));
		int h = (int)(rng_next() % 24), m = (int)(rng_next() % 60), s = (int)(rng_next() % 60);
		int nd = (int)(rng_next() % 10);
		uint64_t fr = 0;
		frac[0] = 0;
		if (nd) {
			frac[0] = '.';
			for (int k = 0; k < nd; k++) {
				int dgt = (int)(rng_next() % 10);
				frac[1 + k] = (char)('0' + dgt);
				fr = fr * 10 + (uint64_t)dgt;
			}
			frac[1 + nd] = 0;
			for (int k = nd; k < 9; k++)
				fr *= 10;
		}
		int oh = 0, om = 0, sign = 0;
		char zone[8] = "Z";
		if (rng_next() % 2) {
			sign = rng_next() % 2 ? 1 : -1;
			oh = (int)(rng_next() % 24);
			om = (int)(rng_next() % 60);
			snprintf(zone, sizeof(zone), "%c%02d:%02d", sign > 0 ? '+' : '-', oh, om);
		}
		snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d%s%s", Y, M, D, h, m, s, frac, zone);
		struct tm tm = { .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
				 .tm_hour = h, .tm_min = m, .tm_sec = s };
		int64_t secs = (int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60);
		if (secs < 0) {
			assert_refused(buf);
			continue;
		}
		assert_int_equal(parse_ok(buf), (uint64_t)secs * NS + fr);
	}
}

static void test_parse_time_relative_and_absolute(void **state)
{
	(void)state;
	uint64_t now = 1800000000ull * 1000000000ull, t;
	assert_int_equal(clock_parse_time("now", now, &t), 0);
	assert_int_equal(t, now);
	assert_int_equal(clock_parse_time("-15m", now, &t), 0);
	assert_int_equal(t, now - 900ull * 1000000000ull);
	assert_int_equal(clock_parse_time("-2h", now, &t), 0);
	assert_int_equal(t, now - 7200ull * 1000000000ull);
	assert_int_equal(clock_parse_time("+1d", now, &t), 0);
	assert_int_equal(t, now + 86400ull * 1000000000ull);
	assert_int_equal(clock_parse_time("-30s", now, &t), 0);
	assert_int_equal(t, now - 30ull * 1000000000ull);
	assert_int_equal(clock_parse_time("2026-12-03T10:00:00Z", now, &t), 0);
	assert_int_equal(t, 1796292000ull * 1000000000ull);
	const char *bad[] = { "", "-", "-15", "-15x", "-m", "15m", "--1m", "-1m2", "-99999999999d", "yesterday" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 7;
		if (clock_parse_time(bad[i], now, &t) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(t, 7);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_utc_z),
		cmocka_unit_test(test_parse_time_relative_and_absolute),
		cmocka_unit_test(test_parse_fraction_any_digits),
		cmocka_unit_test(test_parse_offsets),
		cmocka_unit_test(test_parse_invalid_inputs),
		cmocka_unit_test(test_parse_rejects_day_past_month_end),
		cmocka_unit_test(test_parse_rejects_times_past_u64_ns),
		cmocka_unit_test(test_format_known_values),
		cmocka_unit_test(test_format_then_parse_round_trips),
		cmocka_unit_test(test_parse_matches_timegm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
