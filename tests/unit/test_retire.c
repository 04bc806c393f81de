/* test_retire — retention on disk (flusherd/retire.h): holders read from
 * the offset files, segments retired oldest first, what is said about it.
 *
 * The log: 6 segments of 8 batches each (4 DATA records of 200 bytes, of
 * topics 0, 1, 0, 1, and a MARK), written through the WAL as flusherd writes them; [sinkd] sinks =
 * "disk, ai"; the log goes to a file the tests read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/testdir.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/offset.h"
#include "common/seg.h"
#include "common/settings.h"
#include "flusherd/retire.h"
#include "flusherd/wal.h"
#include "shm/shm.h"

#define SEG_MAX (64u << 10)
#define NSEG 6
#define HOUR_NS (3600ull * 1000000000ull)

struct fix {
	char dir[64], wal_dir[80], sinks[80], logf[96];
	struct settings s;
	struct wal w;
	struct retirer rt;
	char err[CFG_ERR_LEN];
	uint64_t ctr[SHM_CTR_MAX];
	uint64_t first[NSEG + 1];    /* each segment's first LSN; [NSEG]: the end of the log */
	uint64_t fsize[NSEG];
	_Alignas(8) uint8_t buf[1 << 14];
};

/* One write: 4 records and a MARK whose srv_ns is t. */
static void batch(struct fix *f, uint64_t seq, uint64_t t)
{
	uint8_t pl[200];
	size_t len = 0;
	struct seg_chain ch;
	struct rec_mark_bind b;
	seg_chain_start(&ch, f->w.link);
	for (int i = 0; i < 4; i++) {
		memset(pl, (int)(seq + (uint64_t)i), sizeof(pl));
		rec_build_data(f->buf + len, (const uint8_t *)"dev", 3, (uint16_t)(i & 1), 0, seq + (uint64_t)i, t, t,
			       pl, sizeof(pl),
			       mi_crc32(pl, sizeof(pl)));
		seg_chain_add(&ch, (const struct rec_hdr *)(const void *)(f->buf + len));
		len += rec_size(3, sizeof(pl));
	}
	uint64_t pos = seq;
	seg_chain_bind(&ch, f->w.lsn + len, &b);
	rec_build_mark(f->buf + len, 1, 1, &pos, t, &b);
	uint32_t crc = ((const struct rec_hdr *)(const void *)(f->buf + len))->crc;
	len += rec_size(0, REC_MARK_PLEN(1));
	struct iovec v = { f->buf, len };
	assert_int_equal(wal_append(&f->w, &v, 1, len, crc), 0);
	assert_int_equal(wal_sync(&f->w), 0);
}

/* Segment i's newest record is written at `ages[i]` hours ago. */
static void make_log(struct fix *f, const unsigned *hours_ago)
{
	uint64_t now = clock_real_ns(), seq = 1;
	assert_int_equal(wal_open(&f->w, f->wal_dir, 7, SEG_MAX, 0, 0, 1), 0);
	for (int s = 0; s < NSEG; s++) {
		if (s)
			assert_int_equal(wal_rotate(&f->w), 0);
		f->first[s] = f->w.seg_first;
		for (int b = 0; b < 8; b++, seq += 4)
			batch(f, seq, now - (hours_ago ? hours_ago[s] : 0) * HOUR_NS);
	}
	f->first[NSEG] = f->w.lsn;
	wal_close(&f->w);
	for (int s = 0; s < NSEG; s++) {
		char path[160], name[SEG_NAME_LEN];
		struct stat st;
		seg_name(f->first[s], name);
		snprintf(path, sizeof(path), "%s/%s", f->wal_dir, name);
		assert_int_equal(stat(path, &st), 0);
		f->fsize[s] = (uint64_t)st.st_size;
	}
}

static int present(const struct fix *f, int s)
{
	char path[160], name[SEG_NAME_LEN];
	seg_name(f->first[s], name);
	snprintf(path, sizeof(path), "%s/%s", f->wal_dir, name);
	return access(path, F_OK) == 0;
}

/* How many times the log file holds needle. */
static int said(const struct fix *f, const char *needle)
{
	static char b[1 << 16];
	int fd = open(f->logf, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	b[n > 0 ? n : 0] = 0;
	int k = 0;
	for (const char *p = b; (p = strstr(p, needle)); p++)
		k++;
	return k;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-retire-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->dir);
	snprintf(f->sinks, sizeof(f->sinks), "%s/sinks", f->dir);
	snprintf(f->logf, sizeof(f->logf), "%s/log", f->dir);
	if (mkdir(f->wal_dir, 0700) < 0 || mkdir(f->sinks, 0700) < 0)
		return -1;
	snprintf(f->s.data_dir, sizeof(f->s.data_dir), "%s", f->dir);
	snprintf(f->s.sinks, sizeof(f->s.sinks), "disk, ai");
	f->w.fd = f->w.dirfd = -1;
	if (log_open("test", f->logf, LOG_DEBUG) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	retire_free(&f->rt);
	wal_close(&f->w);
	log_open("test", "-", LOG_INFO);
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

static int run(struct fix *f, uint64_t ckpt)
{
	return retire_run(&f->rt, ckpt, f->first[NSEG], NULL);
}

static void test_holders_come_from_the_config_and_the_offset_files(void **state)
{
	struct fix *f = *state;
	make_log(f, NULL);
	f->s.retain_bytes = 2 * f->fsize[0];
	assert_true(retire_enabled(&f->s));
	assert_int_equal(retire_init(&f->rt, &f->s, NULL, f->ctr, f->err), 0);
	assert_int_equal(f->rt.nholders, 2);
	uint64_t end = f->first[NSEG];
	/* no offset at all: both hold at 0, said once each */
	assert_int_equal(run(f, end), 0);
	assert_int_equal(run(f, end), 0);
	assert_int_equal(said(f, "sink instance disk has no committed offset yet"), 1);
	assert_int_equal(said(f, "sink instance ai has no committed offset yet"), 1);
	/* disk at the end; ai damaged: still held at 0, one warning */
	assert_int_equal(offset_store(f->sinks, "disk", end, NULL, 0), 0);
	char path[160];
	snprintf(path, sizeof(path), "%s/ai.offset", f->sinks);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "garbage-garbage-garbage-garbage", 31), 31);
	close(fd);
	assert_int_equal(run(f, end), 0);
	assert_int_equal(run(f, end), 0);
	assert_int_equal(said(f, "ai.offset: damaged"), 1);
	for (int s = 0; s < NSEG; s++)
		assert_true(present(f, s));
	/* ai inside segment 2: segments 0 and 1 go, and no more */
	assert_int_equal(offset_store(f->sinks, "ai", f->first[2] + 8, NULL, 0), 0);
	assert_int_equal(run(f, end), 2);
	assert_false(present(f, 0));
	assert_false(present(f, 1));
	assert_true(present(f, 2));
	assert_int_equal(f->ctr[FC_RETIRED_SEGMENTS], 2);
	assert_int_equal(f->ctr[FC_RETIRED_BYTES], f->fsize[0] + f->fsize[1]);
	assert_int_equal(said(f, "retention: retired 2 segment(s)"), 1);
	assert_int_equal(said(f, "sink instance ai (committed LSN"), 1);
	/* ai caught up: down to the limit (two segments left) */
	assert_int_equal(offset_store(f->sinks, "ai", end, NULL, 0), 0);
	assert_int_equal(run(f, end), 2);
	assert_false(present(f, 3));
	assert_true(present(f, 4));
	assert_true(present(f, 5));
	assert_int_equal(run(f, end), 0);
	assert_int_equal(f->ctr[FC_RETIRED_SEGMENTS], 4);
}

/* The checkpoint must be past a segment, and the active one never goes. */
static void test_the_checkpoint_and_the_active_segment(void **state)
{
	struct fix *f = *state;
	make_log(f, NULL);
	f->s.retain_bytes = 1;
	snprintf(f->s.sinks, sizeof(f->s.sinks), "disk");
	assert_int_equal(retire_init(&f->rt, &f->s, NULL, f->ctr, f->err), 0);
	assert_int_equal(offset_store(f->sinks, "disk", f->first[NSEG], NULL, 0), 0);
	assert_int_equal(run(f, 0), 0);
	assert_int_equal(run(f, f->first[1] - 8), 0);
	assert_int_equal(run(f, f->first[3]), 3);
	assert_int_equal(run(f, f->first[NSEG]), 2);
	assert_true(present(f, NSEG - 1));
	assert_int_equal(run(f, f->first[NSEG]), 0);
}

/* An offset file whose name left [sinkd] sinks holds nothing: said once. */
static void test_an_instance_removed_from_the_config_no_longer_holds(void **state)
{
	struct fix *f = *state;
	make_log(f, NULL);
	f->s.retain_bytes = 3 * f->fsize[0];
	snprintf(f->s.sinks, sizeof(f->s.sinks), "disk");
	assert_int_equal(offset_store(f->sinks, "disk", f->first[NSEG], NULL, 0), 0);
	assert_int_equal(offset_store(f->sinks, "old-cloud", 0, NULL, 0), 0);
	assert_int_equal(retire_init(&f->rt, &f->s, NULL, f->ctr, f->err), 0);
	assert_int_equal(run(f, f->first[NSEG]), 3);
	assert_int_equal(run(f, f->first[NSEG]), 0);
	assert_int_equal(said(f, "sink instance old-cloud is not in [sinkd] sinks any more: it no longer holds "
			      "retention"), 1);
	assert_int_equal(said(f, "disk is not in"), 0);
}

/* No sink configured: nothing holds but the checkpoint. */
static void test_no_sinks(void **state)
{
	struct fix *f = *state;
	make_log(f, NULL);
	f->s.retain_bytes = 1;
	f->s.sinks[0] = 0;
	assert_int_equal(retire_init(&f->rt, &f->s, NULL, f->ctr, f->err), 0);
	assert_int_equal(f->rt.nholders, 0);
	assert_int_equal(run(f, f->first[NSEG]), NSEG - 1);
}

/* retain_ms: by the server time of a segment's newest record, which is
 * its last MARK's (not the file's mtime: all were written just now). */
static void test_age_comes_from_the_last_mark(void **state)
{
	struct fix *f = *state;
	static const unsigned hours[NSEG] = { 50, 40, 30, 20, 10, 0 };
	make_log(f, hours);
	f->s.retain_ms = 25 * 3600 * 1000ll;
	snprintf(f->s.sinks, sizeof(f->s.sinks), "disk");
	assert_int_equal(offset_store(f->sinks, "disk", f->first[NSEG], NULL, 0), 0);
	assert_int_equal(retire_init(&f->rt, &f->s, NULL, f->ctr, f->err), 0);
	assert_int_equal(run(f, f->first[NSEG]), 3);
	assert_true(present(f, 3));
	assert_int_equal(said(f, "older than retain_ms"), 1);
	assert_int_equal(run(f, f->first[NSEG]), 0);
}

/* lag_policy = skip: past its cap the instance holds nothing; before a
 * segment it had not delivered goes, its records (of its topics) from its
 * offset on go into its ledger; a segment a reader maps is unlinked, never
 * recycled; each turn is said once. */
static void test_a_skip_instance_is_passed_and_its_ledger_counts(void **state)
{
	struct fix *f = *state;
	make_log(f, NULL);
	/* whole segments, as from a spare, so that they may be recycled */
	f->s.segment_bytes = SEG_MAX;
	for (int i = 0; i < NSEG; i++) {
		char sp[160], sn[SEG_NAME_LEN];
		seg_name(f->first[i], sn);
		snprintf(sp, sizeof(sp), "%s/%s", f->wal_dir, sn);
		assert_int_equal(truncate(sp, SEG_HDR_LEN + SEG_MAX), 0);
		f->fsize[i] = SEG_HDR_LEN + SEG_MAX;
	}
	f->s.retain_bytes = 2 * f->fsize[0];
	uint64_t blen = 4 * rec_size(3, 200) + rec_size(0, REC_MARK_PLEN(1)), end = f->first[NSEG];
	char ini[160];
	snprintf(ini, sizeof(ini), "%s/test.ini", f->dir);
	FILE *fp = fopen(ini, "w");
	assert_non_null(fp);
	fprintf(fp, "[sink.ai]\nlag_policy = skip\nlag_cap_bytes = %llu\ntopics = 1\n", (unsigned long long)blen * 8);
	fclose(fp);
	cfg_t *c;
	assert_int_equal(cfg_open(ini, &c, f->err), 0);
	assert_int_equal(retire_init(&f->rt, &f->s, c, f->ctr, f->err), 0);
	cfg_close(c);
	uint64_t p = f->first[1] + 3 * blen;       /* 5 batches of segment 1 undelivered */
	assert_int_equal(offset_store(f->sinks, "disk", end, NULL, 0), 0);
	assert_int_equal(offset_store(f->sinks, "ai", p, NULL, 0), 0);
	/* a reader maps segment 2 */
	char path[160], name[SEG_NAME_LEN];
	seg_name(f->first[2], name);
	snprintf(path, sizeof(path), "%s/%s", f->wal_dir, name);
	int rfd = open(path, O_RDONLY);
	assert_true(rfd >= 0);
	assert_int_equal(flock(rfd, LOCK_SH), 0);
	assert_int_equal(run(f, end), 4);
	for (int i = 0; i < 4; i++)
		assert_false(present(f, i));
	assert_true(present(f, 4));
	assert_int_equal(said(f, "sink instance ai (committed LSN"), 1);
	assert_int_equal(said(f, "retention passes it"), 1);
	/* recycled: 0 and 1 (the pool's two); 2 unlinked under its reader, whose
	 * file still holds the segment it mapped */
	assert_int_equal(f->ctr[FC_RECYCLED_SEGMENTS], 2);
	uint8_t hb[SEG_HDR_LEN];
	struct seg_hdr h;
	assert_int_equal(pread(rfd, hb, SEG_HDR_LEN, 0), SEG_HDR_LEN);
	assert_int_equal(seg_hdr_parse(hb, SEG_HDR_LEN, &h), 0);
	assert_int_equal(h.first_lsn, f->first[2]);
	close(rfd);
	/* the ledger: from p to the end of 3, topic 1's records (2 a batch) */
	struct skipped *v;
	size_t n;
	assert_int_equal(skipped_load(f->sinks, "ai", &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].from, p);
	assert_int_equal(v[0].to, f->first[2]);
	assert_int_equal(v[0].records, 5 * 2);
	assert_int_equal(v[1].records, 8 * 2);
	uint64_t recs;
	assert_int_equal(skipped_count(v, n, p, f->first[4], &recs), f->first[4]);
	assert_int_equal(recs, 3 * 16 - 6);
	/* from elsewhere, the chain does not start: nothing counted */
	assert_int_equal(skipped_count(v, n, p + blen, f->first[4], &recs), p + blen);
	assert_int_equal(recs, 0);
	free(v);
	/* the two recycled files count against retain_bytes: one more goes
	 * (the pool full, unlinked), and the active one is left */
	assert_int_equal(run(f, end), 1);
	assert_false(present(f, 4));
	assert_int_equal(f->ctr[FC_RECYCLED_SEGMENTS], 2);
	assert_int_equal(run(f, end), 0);
	assert_int_equal(said(f, "retention passes it"), 1);
	assert_int_equal(offset_store(f->sinks, "ai", end, NULL, 0), 0);
	assert_int_equal(run(f, end), 0);
	assert_int_equal(said(f, "sink instance ai is within its lag_cap_bytes again"), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_holders_come_from_the_config_and_the_offset_files),
		T(test_the_checkpoint_and_the_active_segment),
		T(test_an_instance_removed_from_the_config_no_longer_holds),
		T(test_no_sinks),
		T(test_age_comes_from_the_last_mark),
		T(test_a_skip_instance_is_passed_and_its_ledger_counts),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
