/* test_runner — one sink instance's delivery loop (sinkd/runner.c) against
 * a fake sink, over a real log written by flusherd's WAL code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tests/unit/testdir.h"
#include "common/frame.h"
#include "common/record.h"
#include "flusherd/wal.h"
#include "shm/shm.h"
#include "common/offset.h"
#include "common/sinkcfg.h"
#include "sinkd/runner.h"

#define SEG_MAX (16u << 10)
#define NREC 120

/* The fake sink: what it got, and what it is told to do. */
struct fake {
	uint64_t lsn[4 * NREC], seq[4 * NREC];
	uint16_t topic[4 * NREC];
	size_t n, batches, max_batch, commits;
	int retry_at;          /* the delivery (1-based) that answers RETRY, 0: none */
	int fatal_at;
	int fail_commit_at;    /* the commit (1-based) that fails */
	int failing_at;        /* the delivery (1-based) that answers FAILING */
	int fatal_commit_at;   /* the commit (1-based) that answers FATAL */
	size_t hold;           /* commit() holds back the last `hold` records */
	const struct shm_sink *pub;
	uint32_t state_after;  /* the instance's state at the delivery after a refusal */
	size_t deliveries;
	size_t n_at_commit;    /* records held when the last commit succeeded */
};

static enum sink_rc fake_deliver(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				 char err[SINK_ERR_LEN])
{
	struct fake *f = state;
	(void)retry_ms;
	f->deliveries++;
	if ((int)f->deliveries == f->fatal_at) {
		snprintf(err, SINK_ERR_LEN, "fake: told to fail");
		return SINK_FATAL;
	}
	if (f->failing_at && (int)f->deliveries == f->failing_at + 1)
		f->state_after = f->pub->state;
	if ((int)f->deliveries == f->failing_at) {
		f->n = f->n_at_commit;
		snprintf(err, SINK_ERR_LEN, "fake: AccessDenied");
		return SINK_FAILING;
	}
	if ((int)f->deliveries == f->retry_at) {
		f->n = f->n_at_commit;     /* RETRY: back to the last commit */
		snprintf(err, SINK_ERR_LEN, "fake: try again");
		return SINK_RETRY;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const uint8_t *p = sink_rec_payload(&recs[i], &len);
		assert_int_equal(len, 8);
		assert_int_equal(mi_get64(p), sink_rec_seq(&recs[i]));   /* the payload is the record's */
		f->lsn[f->n] = sink_rec_lsn(&recs[i]);
		f->seq[f->n] = sink_rec_seq(&recs[i]);
		f->topic[f->n] = sink_rec_topic(&recs[i]);
		f->n++;
	}
	f->batches++;
	if (n > f->max_batch)
		f->max_batch = n;
	return SINK_OK;
}

/* A sink that is at-least-once: after a failed commit it forgets what
 * it held since the last good one, as the host expects it to. */
static enum sink_rc fake_commit(void *state, struct sink_commit *c, uint32_t *retry_ms, char err[SINK_ERR_LEN])
{
	struct fake *f = state;
	(void)retry_ms;
	f->commits++;
	if ((int)f->commits == f->fatal_commit_at) {
		snprintf(err, SINK_ERR_LEN, "fake: the store is gone for good");
		return SINK_FATAL;
	}
	if ((int)f->commits == f->fail_commit_at) {
		f->n = f->n_at_commit;
		snprintf(err, SINK_ERR_LEN, "fake: disk full");
		return SINK_RETRY;
	}
	f->n_at_commit = f->n;
	if (f->hold && f->n >= f->hold)
		c->upto = f->lsn[f->n - f->hold];   /* not durable from there on */
	c->blob = NULL;
	c->blob_len = 0;
	return SINK_OK;
}

static const struct sink_desc fake_desc = {
	.abi = SINK_ABI_VERSION, .name = "fake", .deliver = fake_deliver, .commit = fake_commit,
};

struct fix {
	char dir[64], wal_dir[80], sinks[80];
	struct wal w;
	struct shm_ctl *ctl;
	struct shm_sink pub;
	struct fake fake;
	struct runner r;
	int stop;
	uint64_t end;
	uint8_t buf[1 << 16];
};

/* NREC records, seqs 1..NREC, topics 1 and 2 in turn, in batches of 10
 * over several segments. */
static void write_log(struct fix *f)
{
	assert_int_equal(wal_open(&f->w, f->wal_dir, 1, SEG_MAX, 0, 0, 1), 0);
	for (uint64_t seq = 1; seq <= NREC;) {
		size_t len = 0;
		for (int i = 0; i < 10; i++, seq++) {
			uint8_t pl[8];
			mi_put64(pl, seq);
			rec_build_data(f->buf + len, (const uint8_t *)"dev", 3, (uint16_t)(1 + seq % 2), 0, seq, seq, seq,
				       pl, 8, mi_crc32(pl, 8));
			len += rec_size(3, 8);
		}
		uint64_t pos = seq;
		/* the reader does not check the MARK chain: recovery does (test_recover) */
		rec_build_mark(f->buf + len, 1, 1, &pos, 0, NULL);
		uint32_t mark_crc = ((const struct rec_hdr *)(const void *)(f->buf + len))->crc;
		len += rec_size(0, REC_MARK_PLEN(1));
		if (f->w.lsn - f->w.seg_first + len + 64 > SEG_MAX)
			assert_int_equal(wal_rotate(&f->w), 0);
		struct iovec v = { f->buf, len };
		assert_int_equal(wal_append(&f->w, &v, 1, len, mark_crc), 0);
		assert_int_equal(wal_sync(&f->w), 0);
	}
	f->end = f->w.synced_lsn;
	f->ctl->durable_lsn = f->end;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-runner-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->dir);
	snprintf(f->sinks, sizeof(f->sinks), "%s/sinks", f->dir);
	if (mkdir(f->wal_dir, 0700) < 0 || mkdir(f->sinks, 0700) < 0)
		return -1;
	void *ctl;
	if (posix_memalign(&ctl, 4096, sizeof(struct shm_ctl)))
		return -1;
	f->ctl = memset(ctl, 0, sizeof(struct shm_ctl));
	f->w.fd = f->w.dirfd = -1;
	f->fake.pub = &f->pub;
	write_log(f);
	f->r = (struct runner){
		.name = "t", .d = &fake_desc, .state = &f->fake,
		.p = { .batch_records = 16, .batch_bytes = 1 << 20, .batch_ms = 0, .commit_ms = 1000,
		       .retry_min_ms = 1, .retry_max_ms = 2 },
		.ctl = f->ctl, .pub = &f->pub, .wal_dir = f->wal_dir, .offset_dir = f->sinks,
		.segment_bytes = SEG_MAX, .stop = &f->stop, .end_lsn = f->end,
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	wal_close(&f->w);
	free(f->ctl);
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

/* Every seq in [from, to] of the topics in mask (bit t: topic t) once, in
 * LSN order. */
static void expect_once(const struct fake *k, uint64_t from, uint64_t to, unsigned mask)
{
	size_t i = 0;
	for (uint64_t seq = from; seq <= to; seq++) {
		if (!(mask >> (1 + seq % 2) & 1))
			continue;
		assert_true(i < k->n);
		assert_int_equal(k->seq[i], seq);
		if (i)
			assert_true(k->lsn[i] > k->lsn[i - 1]);
		i++;
	}
	assert_int_equal(k->n, i);
}

static uint64_t stored_offset(struct fix *f)
{
	uint64_t lsn = 0;
	void *blob = NULL;
	size_t len = 0;
	assert_int_equal(offset_load(f->sinks, "t", &lsn, &blob, &len), 0);
	free(blob);
	return lsn;
}

static void test_delivers_every_record_once_in_order_in_bounded_batches(void **state)
{
	struct fix *f = *state;
	assert_int_equal(runner_run(&f->r), 0);
	expect_once(&f->fake, 1, NREC, 0x6);
	assert_true(f->fake.max_batch <= 16);
	assert_true(f->fake.batches >= NREC / 16);
	assert_int_equal(f->pub.records, NREC);
	assert_int_equal(f->pub.bytes, NREC * 8);
	assert_int_equal(stored_offset(f), f->end);
	assert_int_equal(f->pub.committed_lsn, f->end);
	assert_int_equal(f->pub.state, SINK_ST_OFF);
	assert_int_equal(f->pub.lag_records, 0);
}

static void test_gets_only_its_topics_and_commits_past_the_others(void **state)
{
	struct fix *f = *state;
	uint16_t two = 2;
	uint8_t *topics;
	assert_int_equal(topics_new(&two, 1, &topics), 0);
	f->r.topics = topics;
	assert_int_equal(runner_run(&f->r), 0);
	expect_once(&f->fake, 1, NREC, 0x4);
	for (size_t i = 0; i < f->fake.n; i++)
		assert_int_equal(f->fake.topic[i], 2);
	/* the offset passes the records it does not take */
	assert_int_equal(stored_offset(f), f->end);
	free(topics);
}

static void test_resumes_after_its_committed_offset(void **state)
{
	struct fix *f = *state;
	/* a first run up to the end, then a resume from the middle */
	assert_int_equal(runner_run(&f->r), 0);
	uint64_t mid = f->fake.lsn[NREC / 2];
	memset(&f->fake, 0, sizeof(f->fake));
	f->r.start_lsn = mid;
	assert_int_equal(runner_run(&f->r), 0);
	expect_once(&f->fake, NREC / 2 + 1, NREC, 0x6);
}

static void test_retry_redelivers_the_same_records_after_a_backoff(void **state)
{
	struct fix *f = *state;
	f->fake.retry_at = 3;
	assert_int_equal(runner_run(&f->r), 0);
	/* the sink went back to its last commit, and got the rest again */
	expect_once(&f->fake, 1, NREC, 0x6);
	assert_int_equal(f->pub.retries, 1);
	assert_int_equal(f->pub.failures, 1);
	assert_string_equal(f->pub.last_error, "fake: try again");
	assert_int_equal(stored_offset(f), f->end);
}

static void test_failed_commit_rewinds_to_the_last_good_one(void **state)
{
	struct fix *f = *state;
	f->r.p.commit_ms = 0;          /* a commit after every batch */
	f->fake.fail_commit_at = 2;
	assert_int_equal(runner_run(&f->r), 0);
	/* the fake dropped what it held since its last good commit, and got it
	 * again: every record once */
	expect_once(&f->fake, 1, NREC, 0x6);
	assert_int_equal(f->pub.retries, 1);
	assert_string_equal(f->pub.last_error, "commit: fake: disk full");
	assert_int_equal(stored_offset(f), f->end);
}

static void test_a_sink_holding_records_commits_below_them_and_gets_them_again(void **state)
{
	struct fix *f = *state;
	f->fake.hold = 5;
	assert_int_equal(runner_run(&f->r), 0);
	uint64_t held = f->fake.lsn[NREC - 5];
	assert_int_equal(stored_offset(f), held);
	assert_int_equal(f->pub.committed_lsn, held);
	/* a restart from the stored offset: the five it held, once more */
	memset(&f->fake, 0, sizeof(f->fake));
	f->fake.pub = &f->pub;
	f->r.start_lsn = held;
	assert_int_equal(runner_run(&f->r), 0);
	expect_once(&f->fake, NREC - 4, NREC, 0x6);
}

static void test_a_refusal_shows_failing_and_is_retried(void **state)
{
	struct fix *f = *state;
	f->fake.failing_at = 2;
	assert_int_equal(runner_run(&f->r), 0);
	expect_once(&f->fake, 1, NREC, 0x6);
	assert_int_equal(f->fake.state_after, SINK_ST_FAILING);
	assert_int_equal(f->pub.retries, 1);
	assert_string_equal(f->pub.last_error, "fake: AccessDenied");
	assert_int_equal(stored_offset(f), f->end);
}

static void test_fatal_stops_the_instance_and_says_why(void **state)
{
	struct fix *f = *state;
	f->fake.fatal_at = 2;
	f->r.end_lsn = 0;              /* it would follow the log: only FATAL ends it */
	assert_int_equal(runner_run(&f->r), -EIO);
	assert_int_equal(f->pub.state, SINK_ST_STOPPED);
	assert_int_equal(f->pub.failures, 1);
	assert_string_equal(f->pub.last_error, "fake: told to fail");
	assert_int_equal(f->fake.batches, 1);   /* the first batch only */
	assert_true(f->fake.n >= 1 && f->fake.n <= 16);
	/* what it had not delivered, counted to the end of the log */
	assert_int_equal(f->pub.lag_records, NREC - f->fake.n);
	assert_int_equal(f->pub.lag_exact, 1);
}

static void test_a_fatal_commit_stops_the_instance_at_its_last_offset(void **state)
{
	struct fix *f = *state;
	f->r.p.commit_ms = 0;
	f->fake.fatal_commit_at = 2;
	f->r.end_lsn = 0;
	assert_int_equal(runner_run(&f->r), -EIO);
	assert_int_equal(f->pub.state, SINK_ST_STOPPED);
	assert_string_equal(f->pub.last_error, "commit: fake: the store is gone for good");
	assert_int_equal(f->fake.commits, 2);
	assert_int_equal(stored_offset(f), f->fake.lsn[f->fake.n_at_commit - 1] + rec_size(3, 8));
}

static void test_a_backfill_run_never_writes_the_offset(void **state)
{
	struct fix *f = *state;
	f->r.no_offsets = 1;
	f->r.start_lsn = f->fake.lsn[0];
	assert_int_equal(runner_run(&f->r), 0);
	expect_once(&f->fake, 1, NREC, 0x6);
	assert_true(f->fake.commits >= 1);   /* the sink still makes its output durable */
	uint64_t lsn;
	void *blob;
	size_t len;
	assert_int_equal(offset_load(f->sinks, "t", &lsn, &blob, &len), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delivers_every_record_once_in_order_in_bounded_batches, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_gets_only_its_topics_and_commits_past_the_others, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resumes_after_its_committed_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_redelivers_the_same_records_after_a_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_rewinds_to_the_last_good_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_sink_holding_records_commits_below_them_and_gets_them_again,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_refusal_shows_failing_and_is_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fatal_stops_the_instance_and_says_why, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_fatal_commit_stops_the_instance_at_its_last_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_backfill_run_never_writes_the_offset, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
