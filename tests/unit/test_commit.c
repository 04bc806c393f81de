/* test_commit — group commit (flusherd/commit.h) against a real shm region
 * (2 rings of 64 KiB, 64 devices) and a real WAL in a temp data dir.
 *
 * Records are pushed as ingestd does: ring_reserve, rec_build_data with the
 * device's slot from devtab_insert, ring_publish.  Like test_wal, this
 * binary defines pwritev() and fdatasync() so a test can make a write or a
 * sync fail; by default they behave as the real calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tests/unit/testdir.h"
#include "common/frame.h"
#include "common/record.h"
#include "common/seg.h"
#include "flusherd/commit.h"
#include "flusherd/recover.h"
#include "flusherd/wal.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/ring.h"
#include "shm/shm.h"

#define RING (64u << 10)
#define LOG_ID 77
#define MARK_LEN (REC_HDR_LEN + REC_MARK_PLEN(2))
#define MAX_REC (16u << 10)

static int write_errno, sync_errno;

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	if (write_errno) {
		errno = write_errno;
		return -1;
	}
	size_t done = 0;
	for (int i = 0; i < iovcnt; i++) {
		ssize_t w = pwrite(fd, iov[i].iov_base, iov[i].iov_len, off + (off_t)done);
		if (w < 0)
			return done ? (ssize_t)done : -1;
		done += (size_t)w;
		if ((size_t)w < iov[i].iov_len)
			break;
	}
	return (ssize_t)done;
}

int fdatasync(int fd)
{
	if (sync_errno) {
		errno = sync_errno;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

struct fix {
	char dir[64], wal_dir[80], inst[64];
	shm_region_t reg;
	struct shm_ctl *ctl;
	struct wal w;
	struct committer c;
	struct ring_prod prod[2];
	uint64_t *ctr;
};

static int counter;

/* (Re)starts the WAL and the committer: segment size and commit bytes. */
static void start(struct fix *f, uint64_t seg_max, uint64_t commit_bytes)
{
	static const uint64_t zero[2] = { 0, 0 };
	commit_free(&f->c);
	wal_close(&f->w);
	char path[128];
	snprintf(path, sizeof(path), "%s/00000000000000000000.seg", f->wal_dir);
	unlink(path);
	assert_int_equal(wal_open(&f->w, f->wal_dir, LOG_ID, seg_max, 0, 0, 1), 0);
	assert_int_equal(commit_init(&f->c, f->ctl, &f->w, zero, commit_bytes, 1000, MAX_REC), 0);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[SHM_ERR_LEN];
	struct shm_geom g = { .nrings = 2, .ndevices = 64, .ring_bytes = RING };
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-commit-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->dir);
	if (mkdir(f->wal_dir, 0700) < 0) {
		free(f);
		return -1;
	}
	snprintf(f->inst, sizeof(f->inst), "test-commit-%d-%d", (int)getpid(), counter++);
	shm_unlink_instance(f->inst);
	if (shm_open_region(f->inst, &g, 1, &f->reg, err) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	f->ctl = f->reg.ctl;
	f->ctr = shm_ctr(f->ctl, STAGE_FLUSHERD);
	f->w.fd = f->w.dirfd = -1;
	write_errno = sync_errno = 0;
	start(f, 1u << 20, 1u << 20);
	for (int i = 0; i < 2; i++)
		ring_prod_attach(&f->prod[i], shm_ring_hdr(f->ctl, (uint32_t)i));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	write_errno = sync_errno = 0;
	commit_free(&f->c);
	wal_close(&f->w);
	int r = testdir_remove(f->dir);
	shm_close_region(&f->reg);
	if (shm_unlink_instance(f->inst) < 0)
		r = -1;
	free(f);
	return r;
}

static struct ring_hdr *ring(struct fix *f, uint32_t i)
{
	return shm_ring_hdr(f->ctl, i);
}

static struct shm_dev *dev(struct fix *f, const char *id)
{
	int s = devtab_insert(f->ctl, (const uint8_t *)id, (uint8_t)strlen(id));
	assert_true(s >= 0);
	return shm_dev(f->ctl, (uint32_t)s);
}

/* Reserves and builds one record of `total` bytes (a multiple of 8, >= 48
 * for a one-byte id) on ring r; published by publish(). */
static void push_sized(struct fix *f, uint32_t r, const char *id, uint64_t seq, uint32_t total)
{
	static uint8_t pl[MAX_REC];
	uint8_t len = (uint8_t)strlen(id);
	uint32_t plen = total - REC_HDR_LEN - len;
	assert_int_equal(rec_size(len, plen), total);
	for (uint32_t i = 0; i < plen; i++)
		pl[i] = (uint8_t)(seq * 13 + i);
	int slot = devtab_insert(f->ctl, (const uint8_t *)id, len);
	assert_true(slot >= 0);
	void *dst = ring_reserve(&f->prod[r], total);
	assert_non_null(dst);
	rec_build_data(dst, (const uint8_t *)id, len, 1, (uint32_t)slot, seq, seq, seq, pl, plen,
		       mi_crc32(pl, plen));
}

static void push(struct fix *f, uint32_t r, const char *id, uint64_t seq)
{
	push_sized(f, r, id, seq, rec_size((uint32_t)strlen(id), 20));
}

static uint64_t publish(struct fix *f, uint32_t r)
{
	return ring_publish(&f->prod[r]);
}

struct walked {
	uint8_t type;
	uint64_t seq;          /* DATA: seq; MARK: pos[0] */
	uint64_t pos1;         /* MARK: pos[1] */
};

/* Reads the records of segment `first` into out (at most max); returns
 * their count and the data bytes they span. */
static size_t walk(struct fix *f, uint64_t first, struct walked *out, size_t max, uint64_t *bytes)
{
	char path[128], name[SEG_NAME_LEN];
	struct stat st;
	seg_name(first, name);
	snprintf(path, sizeof(path), "%s/%s", f->wal_dir, name);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	size_t n = 0, off = SEG_HDR_LEN;
	struct seg_hdr sh;
	struct seg_chain ch;
	assert_int_equal(seg_hdr_parse(b, (size_t)st.st_size, &sh), 0);
	assert_int_equal(sh.first_lsn, first);
	assert_int_equal(sh.version, SEG_VERSION);
	seg_chain_start(&ch, sh.crc);
	while (seg_rec_check(b + off, (size_t)st.st_size - off, MAX_REC) == SEG_REC_OK) {
		const struct rec_hdr *h = (const struct rec_hdr *)(const void *)(b + off);
		assert_true(n < max);
		out[n].type = h->type;
		out[n].seq = h->type == REC_MARK ? rec_mark_pos(h, 0) : h->seq;
		out[n].pos1 = h->type == REC_MARK ? rec_mark_pos(h, 1) : 0;
		if (h->type == REC_MARK) {
			assert_int_equal(rec_mark_shm_id(h), f->ctl->shm_id);
			assert_int_equal(rec_mark_nrings(h), 2);
			/* every MARK closes its write: the chain of version 2 */
			assert_true(seg_chain_close(&ch, h, first + off - SEG_HDR_LEN));
		} else {
			seg_chain_add(&ch, h);
		}
		n++;
		off += rec_total(h);
	}
	assert_int_equal(seg_rec_check(b + off, (size_t)st.st_size - off, MAX_REC), SEG_REC_END);
	*bytes = off - SEG_HDR_LEN;
	free(b);
	return n;
}

static void test_step_appends_ring_bytes_and_a_mark(void **state)
{
	struct fix *f = *state;
	struct shm_dev *d = dev(f, "d1");
	for (uint64_t s = 1; s <= 3; s++)
		push(f, 0, "d1", s);
	uint64_t head = publish(f, 0);
	assert_true(commit_pending(&f->c));
	uint32_t seq0 = f->ctl->durable.seq;
	assert_int_equal(commit_step(&f->c), head + MARK_LEN);
	assert_false(commit_pending(&f->c));
	assert_int_equal(f->w.lsn, head + MARK_LEN);
	assert_int_equal(ring(f, 0)->tail, head);
	/* written is not durable: nothing is published before the sync */
	assert_int_equal(ring(f, 0)->released, 0);
	assert_int_equal(f->ctl->durable_lsn, 0);
	assert_int_equal(d->last_durable, 0);
	assert_int_equal(f->ctl->durable.seq, seq0);
	/* the ring bytes as they are, then the MARK */
	struct walked v[8];
	uint64_t bytes;
	assert_int_equal(walk(f, 0, v, 8, &bytes), 4);
	assert_int_equal(bytes, head + MARK_LEN);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(v[i].type, REC_DATA);
		assert_int_equal(v[i].seq, i + 1);
	}
	assert_int_equal(v[3].type, REC_MARK);
	assert_int_equal(v[3].seq, head);
	assert_int_equal(v[3].pos1, 0);
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(ring(f, 0)->released, head);
	assert_int_equal(f->ctl->durable_lsn, head + MARK_LEN);
	assert_int_equal(f->w.synced_lsn, head + MARK_LEN);
	assert_int_equal(d->last_durable, 3);
	assert_int_equal(f->ctl->durable.seq, seq0 + 1);
	assert_int_equal(f->ctr[FC_RECORDS], 3);
	assert_int_equal(f->ctr[FC_WRITES], 1);
	assert_int_equal(f->ctr[FC_SYNCS], 1);
	assert_int_equal(f->ctr[FC_DURABLE_LSN], head + MARK_LEN);
	/* the sync is in exactly one duration bucket, the one its time says */
	uint64_t in_hist = 0, us = f->ctr[FC_SYNC_NS_MAX] / 1000;
	for (int b = 0; b < FC_SYNC_HIST_END - FC_SYNC_HIST; b++) {
		if (!f->ctr[FC_SYNC_HIST + b])
			continue;
		in_hist += f->ctr[FC_SYNC_HIST + b];
		uint64_t lo = b == 0 ? 0 : 32ull << b, hi = b == 11 ? UINT64_MAX : 64ull << b;
		assert_in_range(us, lo, hi - 1);   /* [0,64), [64,128), ... [65536, inf) us */
	}
	assert_int_equal(in_hist, 1);
}

static void test_empty_rings_write_nothing(void **state)
{
	struct fix *f = *state;
	assert_false(commit_pending(&f->c));
	assert_int_equal(commit_step(&f->c), 0);
	assert_int_equal(f->w.lsn, 0);
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(f->ctr[FC_SYNCS], 0);
	assert_false(commit_due(&f->c, UINT64_MAX));
}

static void test_two_rings_go_in_one_write(void **state)
{
	struct fix *f = *state;
	push(f, 0, "a", 1);
	push(f, 0, "a", 2);
	push(f, 1, "b", 7);
	push(f, 1, "b", 8);
	push(f, 1, "b", 9);
	uint64_t h0 = publish(f, 0), h1 = publish(f, 1);
	assert_int_equal(commit_step(&f->c), h0 + h1 + MARK_LEN);
	assert_int_equal(commit_sync(&f->c), 0);
	struct walked v[8];
	uint64_t bytes;
	assert_int_equal(walk(f, 0, v, 8, &bytes), 6);
	static const uint64_t seqs[] = { 1, 2, 7, 8, 9 };
	for (int i = 0; i < 5; i++)
		assert_int_equal(v[i].seq, seqs[i]);
	assert_int_equal(v[5].seq, h0);
	assert_int_equal(v[5].pos1, h1);
	assert_int_equal(ring(f, 0)->released, h0);
	assert_int_equal(ring(f, 1)->released, h1);
	assert_int_equal(dev(f, "a")->last_durable, 2);
	assert_int_equal(dev(f, "b")->last_durable, 9);
	assert_int_equal(f->ctr[FC_WRITES], 1);
}

/* Steps move the tail; only a sync moves `released`, and ingestd reuses
 * ring space only below released. */
static void test_released_and_durable_move_only_on_sync(void **state)
{
	struct fix *f = *state;
	for (int i = 0; i < 4; i++)
		push_sized(f, 0, "x", (uint64_t)i + 1, RING / 4);
	uint64_t head = publish(f, 0);
	assert_null(ring_reserve(&f->prod[0], 64));       /* full */
	assert_int_equal(commit_step(&f->c), head + MARK_LEN);
	assert_int_equal(ring(f, 0)->tail, head);
	assert_null(ring_reserve(&f->prod[0], 64));       /* written, not durable */
	assert_int_equal(dev(f, "x")->last_durable, 0);
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(dev(f, "x")->last_durable, 4);
	assert_non_null(ring_reserve(&f->prod[0], 64));
}

/* Several steps, one sync: the sync covers them all. */
static void test_one_sync_covers_several_steps(void **state)
{
	struct fix *f = *state;
	push(f, 0, "x", 1);
	publish(f, 0);
	int64_t n1 = commit_step(&f->c);
	push(f, 0, "x", 2);
	push(f, 1, "y", 5);
	uint64_t h0 = publish(f, 0), h1 = publish(f, 1);
	int64_t n2 = commit_step(&f->c);
	assert_true(n1 > 0 && n2 > 0);
	assert_int_equal(f->ctl->durable_lsn, 0);
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(f->ctr[FC_SYNCS], 1);
	assert_int_equal(f->ctl->durable_lsn, (uint64_t)(n1 + n2));
	assert_int_equal(ring(f, 0)->released, h0);
	assert_int_equal(ring(f, 1)->released, h1);
	assert_int_equal(dev(f, "x")->last_durable, 2);
	assert_int_equal(dev(f, "y")->last_durable, 5);
}

static void test_commit_due_by_bytes_or_time(void **state)
{
	struct fix *f = *state;
	start(f, 1u << 20, 512);
	assert_false(commit_due(&f->c, UINT64_MAX));       /* nothing unsynced */
	push_sized(f, 0, "x", 1, 64);
	publish(f, 0);
	assert_int_equal(commit_step(&f->c), 64 + MARK_LEN);
	uint64_t t = f->c.unsynced_since;
	assert_true(t != 0);
	assert_false(commit_due(&f->c, t));
	assert_false(commit_due(&f->c, t + 999999));
	assert_true(commit_due(&f->c, t + 1000000));       /* commit_us = 1000 */
	push_sized(f, 0, "x", 2, 512 - 64 - MARK_LEN - MARK_LEN);
	publish(f, 0);
	assert_true(commit_step(&f->c) > 0);
	assert_int_equal(f->w.lsn - f->w.synced_lsn, 512);
	assert_true(commit_due(&f->c, t));                 /* by bytes */
	assert_int_equal(commit_sync(&f->c), 0);
	assert_false(commit_due(&f->c, UINT64_MAX));
}

/* commit_bytes bounds one write; the rest follows in the next steps. */
static void test_commit_bytes_bounds_one_write(void **state)
{
	struct fix *f = *state;
	start(f, 1u << 20, 512);
	for (uint64_t s = 1; s <= 10; s++)
		push_sized(f, 0, "x", s, 104);
	uint64_t head = publish(f, 0);
	assert_int_equal(commit_step(&f->c), 4 * 104 + MARK_LEN);
	assert_int_equal(commit_step(&f->c), 4 * 104 + MARK_LEN);
	assert_int_equal(commit_step(&f->c), 2 * 104 + MARK_LEN);
	assert_int_equal(commit_step(&f->c), 0);
	assert_int_equal(ring(f, 0)->tail, head);
	struct walked v[16];
	uint64_t bytes;
	assert_int_equal(walk(f, 0, v, 16, &bytes), 13);
	static const int marks[] = { 4, 9, 12 };
	for (int i = 0, s = 1; i < 13; i++) {
		int is_mark = i == marks[0] || i == marks[1] || i == marks[2];
		assert_int_equal(v[i].type, is_mark ? REC_MARK : REC_DATA);
		if (!is_mark)
			assert_int_equal(v[i].seq, s++);
	}
	assert_int_equal(v[12].seq, head);
}

/* Pushes records of ring 0 until its head is exactly at pos, then commits
 * and syncs them, so the producer has room again. */
static void fill_ring0_to(struct fix *f, uint64_t pos, uint64_t *seq)
{
	while (f->prod[0].head < pos) {
		uint64_t rem = pos - f->prod[0].head;
		push_sized(f, 0, "f", (*seq)++, rem >= 4096 + 48 ? 4096 : (uint32_t)rem);
	}
	assert_int_equal(publish(f, 0), pos);
	while (commit_step(&f->c) > 0)
		;
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(ring(f, 0)->released, pos);
}

/* Records on both sides of the wrap go out in one write as two spans; the
 * PAD (or bare skip under 40 bytes) is never written to the log, and the
 * MARK holds the position past it. */
static void test_pads_at_the_ring_wrap_are_skipped(void **state)
{
	struct fix *f = *state;
	uint64_t seq = 1;
	static const uint32_t left[] = { 96, 32 };     /* PAD, then bare skip */
	for (int lap = 0; lap < 2; lap++) {
		uint64_t end = (uint64_t)(lap + 1) * RING;
		fill_ring0_to(f, end - left[lap] - 104, &seq);
		uint64_t lsn0 = f->w.lsn, first = seq;
		push_sized(f, 0, "w", seq++, 104);         /* up to the end */
		push_sized(f, 0, "w", seq++, 256);         /* does not fit: wraps */
		if (lap == 0)
			assert_int_equal(((struct rec_hdr *)(void *)(ring_data(ring(f, 0)) + RING - 96))->type,
					 REC_PAD);
		uint64_t head = publish(f, 0);
		assert_int_equal(head, end + 256);
		assert_int_equal(commit_step(&f->c), 104 + 256 + MARK_LEN);
		assert_int_equal(f->w.lsn, lsn0 + 104 + 256 + MARK_LEN);
		assert_int_equal(commit_sync(&f->c), 0);
		assert_int_equal(ring(f, 0)->released, head);
		struct walked v[64];
		uint64_t bytes;
		size_t n = walk(f, 0, v, 64, &bytes);
		assert_int_equal(bytes, f->w.lsn);
		assert_int_equal(v[n - 3].type, REC_DATA);
		assert_int_equal(v[n - 3].seq, first);
		assert_int_equal(v[n - 2].seq, first + 1);
		assert_int_equal(v[n - 1].type, REC_MARK);
		assert_int_equal(v[n - 1].seq, head);
		for (size_t i = 0; i < n; i++)
			assert_true(v[i].type == REC_DATA || v[i].type == REC_MARK);
	}
}

/* A segment without room for the largest record and a MARK is synced and
 * closed, and the next write starts a segment named by its LSN; recovery
 * reads the result back whole. */
static void test_rotation_when_the_segment_is_nearly_full(void **state)
{
	struct fix *f = *state;
	start(f, 3 * MAX_REC, 1u << 20);
	uint64_t seq = 1, expect_records = 0;
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 5; i++)
			push_sized(f, round & 1, "r", seq++, 1024);
		publish(f, round & 1);
		assert_true(commit_step(&f->c) > 0);
		expect_records += 6;
		if (round % 3 == 2)
			assert_int_equal(commit_sync(&f->c), 0);
	}
	assert_int_equal(commit_sync(&f->c), 0);
	struct seg_ent *segs;
	size_t nseg;
	assert_int_equal(seg_list(f->wal_dir, &segs, &nseg), 0);
	assert_int_equal(nseg, 3);
	assert_int_equal(f->ctr[FC_SEGMENTS], nseg - 1);
	uint64_t next = 0, total = 0, data = 0;
	for (size_t s = 0; s < nseg; s++) {
		struct walked v[64];
		uint64_t bytes;
		assert_int_equal(segs[s].first_lsn, next);      /* contiguous */
		size_t n = walk(f, segs[s].first_lsn, v, 64, &bytes);
		assert_true(bytes <= 3 * MAX_REC);
		assert_int_equal(v[n - 1].type, REC_MARK);      /* whole writes only */
		for (size_t i = 0; i < n; i++)
			if (v[i].type == REC_DATA)
				assert_int_equal(v[i].seq, ++data);
		next += bytes;
		total += n;
	}
	free(segs);
	assert_int_equal(next, f->w.synced_lsn);
	assert_int_equal(total, expect_records);
	struct recover_result res;
	char err[RECOVER_ERR_LEN];
	wal_close(&f->w);
	assert_int_equal(recover_run(f->dir, f->ctl, &res, err), 0);
	assert_int_equal(res.end_lsn, next);
	assert_int_equal(res.records, expect_records);
	assert_int_equal(res.cut_bytes, 0);
	assert_int_equal(res.pos[0], ring(f, 0)->head);
	assert_int_equal(res.pos[1], ring(f, 1)->head);
}

/* A failed fdatasync forgets the unsynced writes: the rings rewind to
 * `released`, nothing is published, and the next step writes the same
 * records again, once. */
static void test_failed_sync_rewinds_the_rings(void **state)
{
	struct fix *f = *state;
	for (uint64_t s = 1; s <= 3; s++)
		push(f, 0, "z", s);
	uint64_t head = publish(f, 0);
	int64_t n = commit_step(&f->c);
	sync_errno = EIO;
	assert_int_equal(commit_sync(&f->c), -EIO);
	assert_int_equal(f->ctr[FC_SYNC_ERRORS], 1);
	assert_int_equal(ring(f, 0)->tail, 0);
	assert_int_equal(ring(f, 0)->released, 0);
	assert_int_equal(f->w.lsn, 0);
	assert_int_equal(f->ctl->durable_lsn, 0);
	assert_int_equal(dev(f, "z")->last_durable, 0);
	assert_true(commit_pending(&f->c));
	sync_errno = 0;
	assert_int_equal(commit_step(&f->c), n);
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(ring(f, 0)->released, head);
	assert_int_equal(dev(f, "z")->last_durable, 3);
	struct walked v[8];
	uint64_t bytes;
	assert_int_equal(walk(f, 0, v, 8, &bytes), 4);
	assert_int_equal(bytes, (uint64_t)n);
}

/* A failed write consumes nothing: the caller stalls and retries. */
static void test_failed_write_consumes_nothing(void **state)
{
	struct fix *f = *state;
	push(f, 0, "z", 1);
	uint64_t head = publish(f, 0);
	write_errno = ENOSPC;
	assert_int_equal(commit_step(&f->c), -ENOSPC);
	assert_int_equal(f->ctr[FC_WRITE_ERRORS], 1);
	assert_int_equal(ring(f, 0)->tail, 0);
	assert_int_equal(f->w.lsn, 0);
	assert_true(commit_pending(&f->c));
	write_errno = 0;
	assert_int_equal(commit_step(&f->c), head + MARK_LEN);
	assert_int_equal(commit_sync(&f->c), 0);
	assert_int_equal(dev(f, "z")->last_durable, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_step_appends_ring_bytes_and_a_mark),
		T(test_empty_rings_write_nothing),
		T(test_two_rings_go_in_one_write),
		T(test_released_and_durable_move_only_on_sync),
		T(test_one_sync_covers_several_steps),
		T(test_commit_due_by_bytes_or_time),
		T(test_commit_bytes_bounds_one_write),
		T(test_pads_at_the_ring_wrap_are_skipped),
		T(test_rotation_when_the_segment_is_nearly_full),
		T(test_failed_sync_rewinds_the_rings),
		T(test_failed_write_consumes_nothing),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
