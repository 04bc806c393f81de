/* test_retain — the retention floor (flusherd/retain.h): which segments may
 * go, from the segment list, the holders, the checkpoint and the limits.
 *
 * The fixture is a log of 1 MiB segments (file size 1 MiB + 64), first LSNs
 * 0, 1 Mi, 2 Mi, ...; segment i's newest record is i seconds after T0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "flusherd/retain.h"

#define MiB (1ull << 20)
#define SEG_FILE (MiB + 64)
#define T0 1800000000000000000ull
#define SEC 1000000000ull
#define NSEG_MAX 16

struct fix {
	struct retain_seg segs[NSEG_MAX];
	struct retain_holder holders[4];
	struct retain_in in;
	struct retain_plan plan;
};

/* n segments, the last active; holders and checkpoint at the end of the
 * log (everything delivered), size limit 4 segments, no age limit. */
static void make_log(struct fix *f, size_t n)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < n; i++)
		f->segs[i] = (struct retain_seg){ .first_lsn = i * MiB, .bytes = SEG_FILE, .newest_ns = T0 + i * SEC };
	uint64_t end = (n - 1) * MiB + 1000;
	f->holders[0] = (struct retain_holder){ .name = "disk", .lsn = end };
	f->in = (struct retain_in){ .segs = f->segs, .nseg = n, .holders = f->holders, .nholders = 1,
				    .end_lsn = end, .ckpt_lsn = end, .now_ns = T0 + (n - 1) * SEC,
				    .retain_bytes = 4 * SEG_FILE };
}

static size_t floor_n(struct fix *f)
{
	memset(&f->plan, 0xee, sizeof(f->plan));
	retain_floor(&f->in, &f->plan);
	return f->plan.n;
}

static void test_no_limit_keeps_everything(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	f.in.retain_bytes = 0;
	assert_int_equal(floor_n(&f), 0);
	assert_int_equal(f.plan.stop, RETAIN_STOP_LIMITS);
	assert_int_equal(f.plan.floor_lsn, 0);
	assert_int_equal(f.plan.bytes, 0);
}

/* Over retain_bytes: the oldest go until the log's bytes (active segment
 * included) are within the limit. */
static void test_size_limit_retires_the_oldest_until_within(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	assert_int_equal(floor_n(&f), 6);
	assert_int_equal(f.plan.stop, RETAIN_STOP_LIMITS);
	assert_int_equal(f.plan.floor_lsn, 6 * MiB);
	assert_int_equal(f.plan.bytes, 6 * SEG_FILE);
	/* exactly at the limit: nothing more goes */
	f.in.segs = f.segs + 6;
	f.in.nseg = 4;
	assert_int_equal(floor_n(&f), 0);
	/* one byte over it: the oldest goes */
	f.in.retain_bytes = 4 * SEG_FILE - 1;
	assert_int_equal(floor_n(&f), 1);
	assert_int_equal(f.plan.floor_lsn, 7 * MiB);
}

/* Segments of other sizes (made under another segment_bytes, or grown
 * without a spare) count by their real size. */
static void test_sizes_are_the_files_own(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 4);
	f.segs[0].bytes = 10 * MiB;
	f.in.retain_bytes = 5 * MiB;
	assert_int_equal(floor_n(&f), 1);
	assert_int_equal(f.plan.bytes, 10 * MiB);
}

static void test_the_active_segment_is_never_retired(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 3);
	f.in.retain_bytes = 1;                 /* everything is over the limit */
	f.in.retain_ms = 1;
	assert_int_equal(floor_n(&f), 2);
	assert_int_equal(f.plan.stop, RETAIN_STOP_ACTIVE);
	assert_int_equal(f.plan.floor_lsn, 2 * MiB);
	make_log(&f, 1);
	f.in.retain_bytes = 1;
	assert_int_equal(floor_n(&f), 0);
	assert_int_equal(f.plan.stop, RETAIN_STOP_ACTIVE);
	f.in.nseg = 0;
	assert_int_equal(floor_n(&f), 0);
	assert_int_equal(f.plan.stop, RETAIN_STOP_ACTIVE);
}

/* A holder keeps every segment it has not committed past: its LSN must be
 * at or beyond the segment's end (the next one's first LSN). */
static void test_a_holder_keeps_what_it_has_not_committed_past(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	f.holders[1] = (struct retain_holder){ .name = "slow", .lsn = 3 * MiB - 8 };
	f.in.nholders = 2;
	assert_int_equal(floor_n(&f), 2);
	assert_int_equal(f.plan.stop, RETAIN_STOP_HOLDER);
	assert_int_equal(f.plan.holder, 1);
	f.holders[1].lsn = 3 * MiB;            /* exactly at segment 2's end */
	assert_int_equal(floor_n(&f), 3);
	assert_int_equal(f.plan.stop, RETAIN_STOP_HOLDER);
	/* a holder with no offset yet holds at 0: nothing goes */
	f.holders[1].lsn = 0;
	assert_int_equal(floor_n(&f), 0);
	assert_int_equal(f.plan.holder, 1);
	/* the first holder that holds is named */
	f.holders[0].lsn = 0;
	assert_int_equal(floor_n(&f), 0);
	assert_int_equal(f.plan.holder, 0);
}

/* No holder at all (no sink configured): the limits and the checkpoint
 * alone decide. */
static void test_no_holders(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	f.in.nholders = 0;
	assert_int_equal(floor_n(&f), 6);
}

static void test_the_checkpoint_must_be_past_the_segment(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	f.in.ckpt_lsn = 2 * MiB + 64;          /* inside segment 2 */
	assert_int_equal(floor_n(&f), 2);
	assert_int_equal(f.plan.stop, RETAIN_STOP_CKPT);
	f.in.ckpt_lsn = 2 * MiB;               /* at its start: segment 1's end */
	assert_int_equal(floor_n(&f), 2);
	f.in.ckpt_lsn = 0;
	assert_int_equal(floor_n(&f), 0);
	assert_int_equal(f.plan.stop, RETAIN_STOP_CKPT);
}

/* The age limit: a segment goes once its newest record is older than
 * retain_ms, whatever the size. */
static void test_age_limit(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	f.in.retain_bytes = 0;
	f.in.retain_ms = 5000;
	f.in.now_ns = T0 + 9 * SEC;
	/* segments 0..3 are 9..6 s old; segment 4 is exactly 5 s old: kept */
	assert_int_equal(floor_n(&f), 4);
	assert_int_equal(f.plan.stop, RETAIN_STOP_LIMITS);
	f.in.now_ns++;
	f.in.now_ns += 1000000;                /* 5.001 s: over it */
	assert_int_equal(floor_n(&f), 5);
	/* either limit is enough */
	f.in.retain_bytes = 2 * SEG_FILE;
	assert_int_equal(floor_n(&f), 8);
}

/* A clock set back, or an age nobody could read, never makes a segment
 * old; and the floor stays a prefix: a younger segment after an unknown
 * one waits for it. */
static void test_unknown_or_future_age_keeps_the_segment(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 6);
	f.in.retain_bytes = 0;
	f.in.retain_ms = 1000;
	f.in.now_ns = T0 + 100 * SEC;
	f.segs[2].newest_ns = 0;
	assert_int_equal(floor_n(&f), 2);
	f.segs[2].newest_ns = T0 + 200 * SEC;
	assert_int_equal(floor_n(&f), 2);
	assert_int_equal(f.plan.floor_lsn, 2 * MiB);
}

/* The seam for lag_cap_bytes / lag_policy: a LAG_SKIP holder further
 * behind than its cap stops holding; within it, or LAG_HOLD, it holds. */
static void test_skip_policy_past_its_cap_stops_holding(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	uint64_t end = f.in.end_lsn;
	f.holders[1] = (struct retain_holder){ .name = "ai", .lsn = MiB, .lag_cap_bytes = 4 * MiB,
					       .policy = LAG_HOLD };
	f.in.nholders = 2;
	assert_int_equal(floor_n(&f), 1);      /* hold: however far behind */
	f.holders[1].policy = LAG_SKIP;
	assert_false(retain_holds(&f.holders[1], end));
	assert_int_equal(floor_n(&f), 6);      /* skip, past the cap: the limits decide */
	f.holders[1].lsn = end - 4 * MiB;      /* exactly at the cap: holds */
	assert_true(retain_holds(&f.holders[1], end));
	assert_int_equal(floor_n(&f), 5);
	f.holders[1].lag_cap_bytes = 0;        /* skip without a cap: always holds */
	f.holders[1].lsn = 0;
	assert_true(retain_holds(&f.holders[1], end));
	assert_int_equal(floor_n(&f), 0);
}

/* A holder past the end of the log (its offset survived a --repair cut)
 * holds nothing. */
static void test_holder_past_the_end(void **state)
{
	struct fix f;
	(void)state;
	make_log(&f, 10);
	f.holders[0].lsn = f.in.end_lsn + 12345;
	f.holders[0].policy = LAG_SKIP;
	f.holders[0].lag_cap_bytes = 1;
	assert_true(retain_holds(&f.holders[0], f.in.end_lsn));
	assert_int_equal(floor_n(&f), 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_limit_keeps_everything),
		cmocka_unit_test(test_size_limit_retires_the_oldest_until_within),
		cmocka_unit_test(test_sizes_are_the_files_own),
		cmocka_unit_test(test_the_active_segment_is_never_retired),
		cmocka_unit_test(test_a_holder_keeps_what_it_has_not_committed_past),
		cmocka_unit_test(test_no_holders),
		cmocka_unit_test(test_the_checkpoint_must_be_past_the_segment),
		cmocka_unit_test(test_age_limit),
		cmocka_unit_test(test_unknown_or_future_age_keeps_the_segment),
		cmocka_unit_test(test_skip_policy_past_its_cap_stops_holding),
		cmocka_unit_test(test_holder_past_the_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
