/* test_recover — flusherd start-up recovery (flusherd/recover.h) and the
 * offline check --replay / --repair (flusherd/replay.h).
 *
 * Each test builds a real log by hand, as commit.c writes it: wal_open, then
 * batches of DATA records (rec_build_data) each ending with a MARK that holds
 * ring 0's position (rec_build_mark with the region's shm_id), one
 * wal_append + wal_sync per batch.  Ring positions count DATA bytes as if
 * every record went through ring 0.  Region: 1 ring of 1 MiB, 64 devices.
 * Every test runs twice: segments that grow, and preallocated ones (spare).
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
#include <unistd.h>

#include "tests/unit/testdir.h"
#include "common/frame.h"
#include "common/record.h"
#include "common/seg.h"
#include "common/settings.h"
#include "flusherd/ckpt.h"
#include "flusherd/recover.h"
#include "flusherd/replay.h"
#include "flusherd/wal.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/ring.h"
#include "shm/shm.h"

#define LOG_ID 0x5eed5eed5eed5eedull
#define SEG_MAX (64u << 10)
#define MAX_PLEN 4096u
#define MARK_LEN (REC_HDR_LEN + REC_MARK_PLEN(1))

struct fix {
	char dir[64], wal_dir[80], inst[64];
	int prealloc;
	shm_region_t reg;
	struct shm_ctl *ctl;
	struct wal w;
	struct seg_chain chain;  /* the writer's MARK chain (common/seg.h) */
	uint64_t pos;            /* ring 0 position after the last DATA record */
	uint64_t mark_end;       /* LSN after the last MARK */
	uint64_t mark_pos;       /* ring position in that MARK */
	uint32_t plen;           /* payload length of batch records; 0: varies with seq */
	struct recover_result res;
	char err[RECOVER_ERR_LEN];
	_Alignas(8) uint8_t buf[1 << 16];
};

static int counter;

static int setup_mode(void **state, int prealloc)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[SHM_ERR_LEN];
	struct shm_geom g = { .nrings = 1, .ndevices = 64, .ring_bytes = 1u << 20 };
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-recover-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->dir);
	if (mkdir(f->wal_dir, 0700) < 0) {
		free(f);
		return -1;
	}
	snprintf(f->inst, sizeof(f->inst), "test-recover-%d-%d", (int)getpid(), counter++);
	shm_unlink_instance(f->inst);
	if (shm_open_region(f->inst, &g, 1, &f->reg, err) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	f->ctl = f->reg.ctl;
	f->prealloc = prealloc;
	f->w.fd = f->w.dirfd = -1;
	*state = f;
	return 0;
}

static int setup_grow(void **state) { return setup_mode(state, 0); }
static int setup_prealloc(void **state) { return setup_mode(state, 1); }

static int teardown(void **state)
{
	struct fix *f = *state;
	wal_close(&f->w);
	int r = testdir_remove(f->dir);
	shm_close_region(&f->reg);
	if (shm_unlink_instance(f->inst) < 0)
		r = -1;
	free(f);
	return r;
}

static void open_log(struct fix *f)
{
	if (f->prealloc)
		assert_int_equal(wal_make_spare(f->wal_dir, SEG_MAX), 0);
	assert_int_equal(wal_open(&f->w, f->wal_dir, LOG_ID, SEG_MAX, 0, 0, 1), 0);
	assert_int_equal(f->w.spare_used, f->prealloc);
	seg_chain_start(&f->chain, f->w.link);
}

/* Opens the log where recovery left it (the ring resumes there too). */
static void reopen_log(struct fix *f)
{
	assert_int_equal(wal_open(&f->w, f->wal_dir, f->res.log_id, SEG_MAX, f->res.seg_first, f->res.end_lsn,
				  f->res.new_log), 0);
	seg_chain_start(&f->chain, f->w.link);
	f->pos = f->res.pos[0];
}

static void rotate(struct fix *f)
{
	if (f->prealloc)
		assert_int_equal(wal_make_spare(f->wal_dir, SEG_MAX), 0);
	assert_int_equal(wal_rotate(&f->w), 0);
	seg_chain_start(&f->chain, f->w.link);
}

/* One write and its sync; mark_crc: the MARK ending it (else the link
 * stays, as for bytes that are no batch at all) */
static void append_mark(struct fix *f, const void *p, size_t len, uint32_t mark_crc)
{
	struct iovec v = { (void *)p, len };
	assert_int_equal(wal_append(&f->w, &v, 1, len, mark_crc), 0);
	assert_int_equal(wal_sync(&f->w), 0);
}

static void append(struct fix *f, const void *p, size_t len)
{
	append_mark(f, p, len, f->w.link);
}

/* n DATA records of device dev, seqs seq0.., then a MARK (when mark) with
 * the given shm_id; one write.  Returns the LSN of the first record. */
static uint64_t batch_id(struct fix *f, const char *dev, uint64_t seq0, int n, int mark, uint64_t shm_id)
{
	uint8_t pl[100];
	size_t len = 0;
	uint64_t start = f->w.lsn;
	for (int i = 0; i < n; i++) {
		uint64_t seq = seq0 + (uint64_t)i;
		uint32_t plen = f->plen ? f->plen : (uint32_t)(seq % 50) + 10;
		for (uint32_t k = 0; k < plen; k++)
			pl[k] = (uint8_t)(seq + k);
		rec_build_data(f->buf + len, (const uint8_t *)dev, (uint8_t)strlen(dev), 1, 0, seq, seq, seq, pl, plen,
			       mi_crc32(pl, plen));
		seg_chain_add(&f->chain, (const struct rec_hdr *)(const void *)(f->buf + len));
		len += rec_size((uint32_t)strlen(dev), plen);
		f->pos += rec_size((uint32_t)strlen(dev), plen);
	}
	uint32_t link = f->w.link;
	if (mark) {
		struct rec_mark_bind b;
		seg_chain_bind(&f->chain, f->w.lsn + len, &b);
		rec_build_mark(f->buf + len, shm_id, 1, &f->pos, 1, &b);
		link = ((const struct rec_hdr *)(const void *)(f->buf + len))->crc;
		seg_chain_start(&f->chain, link);
		len += MARK_LEN;
	}
	append_mark(f, f->buf, len, link);
	if (mark) {
		f->mark_end = f->w.lsn;
		f->mark_pos = f->pos;
	}
	shm_store_release(&shm_ring_hdr(f->ctl, 0)->head, f->pos);
	return start;
}

static uint64_t batch(struct fix *f, const char *dev, uint64_t seq0, int n, int mark)
{
	return batch_id(f, dev, seq0, n, mark, f->ctl->shm_id);
}

static int recover(struct fix *f)
{
	wal_close(&f->w);         /* flusherd died */
	memset(&f->res, 0xee, sizeof(f->res));
	f->err[0] = 0;
	return recover_run(f->dir, f->ctl, &f->res, f->err);
}

static void seg_file(const struct fix *f, uint64_t first, char *path, size_t len)
{
	char name[SEG_NAME_LEN];
	seg_name(first, name);
	snprintf(path, len, "%s/%s", f->wal_dir, name);
}

static void xor_at(const struct fix *f, uint64_t seg_first, uint64_t lsn, uint8_t x)
{
	char path[128];
	uint8_t b;
	seg_file(f, seg_first, path, sizeof(path));
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	off_t off = (off_t)(SEG_HDR_LEN + lsn - seg_first);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= x;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* Whether every byte of the segment from lsn on is zero (or absent). */
static int zero_from(const struct fix *f, uint64_t seg_first, uint64_t lsn)
{
	char path[128];
	uint8_t b[4096];
	ssize_t n;
	seg_file(f, seg_first, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t off = (off_t)(SEG_HDR_LEN + lsn - seg_first);
	while ((n = pread(fd, b, sizeof(b), off)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (b[i]) {
				close(fd);
				return 0;
			}
		off += n;
	}
	close(fd);
	return 1;
}

static uint64_t durable_of(struct fix *f, const char *id)
{
	int s = devtab_lookup(f->ctl, (const uint8_t *)id, (uint8_t)strlen(id));
	return s < 0 ? 0 : shm_dev(f->ctl, (uint32_t)s)->last_durable;
}

static void store_meta(struct fix *f, uint64_t ckpt, uint64_t pos)
{
	struct meta m = { .nrings = 1, .log_id = LOG_ID, .ckpt_lsn = ckpt, .shm_id = f->ctl->shm_id };
	m.pos[0] = pos;
	assert_int_equal(meta_store(f->dir, &m), 0);
}

/* data/devices by hand (format in ckpt.h). */
static void store_devices(struct fix *f, uint64_t lsn, const char *id, uint64_t seq)
{
	uint8_t b[128];
	size_t n = strlen(id), len = 24 + 1 + n + 8;
	char path[128];
	memcpy(b, "MIDEVCK1", 8);
	mi_put64(b + 8, lsn);
	mi_put32(b + 16, 1);
	b[24] = (uint8_t)n;
	memcpy(b + 25, id, n);
	mi_put64(b + 25 + n, seq);
	mi_put32(b + 20, mi_crc32(b + 24, len - 24));
	snprintf(path, sizeof(path), "%s/devices", f->dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, len), (ssize_t)len);
	close(fd);
}

static void test_empty_wal_dir_starts_a_new_log(void **state)
{
	struct fix *f = *state;
	assert_int_equal(recover(f), 0);
	assert_true(f->res.new_log);
	assert_int_equal(f->res.end_lsn, 0);
	assert_int_equal(f->res.seg_first, 0);
	assert_int_equal(f->res.records, 0);
	assert_int_equal(f->res.cut_bytes, 0);
	assert_int_equal(f->res.pos[0], 0);
	assert_true(f->res.log_id != 0);
	/* a meta at LSN 0 keeps its log id */
	store_meta(f, 0, 0);
	assert_int_equal(recover(f), 0);
	assert_true(f->res.new_log);
	assert_int_equal(f->res.log_id, LOG_ID);
	/* but a meta past 0 with no segment means the log was lost */
	store_meta(f, 4096, 0);
	assert_int_equal(recover(f), -ENOENT);
	assert_non_null(strstr(f->err, "no segments"));
}

static void test_log_ends_at_the_last_mark(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 3, 1);
	batch(f, "b", 10, 1, 1);
	batch(f, "a", 4, 5, 1);
	uint64_t end = f->w.lsn;
	assert_int_equal(recover(f), 0);
	assert_false(f->res.new_log);
	assert_int_equal(f->res.log_id, LOG_ID);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.seg_first, 0);
	assert_int_equal(f->res.records, 3 + 1 + 1 + 1 + 5 + 1);
	assert_int_equal(f->res.cut_bytes, 0);
	assert_int_equal(f->res.pos[0], f->mark_pos);
	/* fresh region: seqs rebuilt from the log, accepted = durable */
	assert_int_equal(durable_of(f, "a"), 8);
	assert_int_equal(durable_of(f, "b"), 10);
	int s = devtab_lookup(f->ctl, (const uint8_t *)"a", 1);
	assert_int_equal(shm_dev(f->ctl, (uint32_t)s)->last_accepted, 8);
}

static void test_partial_record_after_the_last_mark_is_cut(void **state)
{
	struct fix *f = *state;
	uint8_t torn[200], pl[100];
	open_log(f);
	batch(f, "a", 1, 2, 1);
	uint64_t end = f->mark_end;
	uint32_t n = rec_size(1, 100);
	memset(pl, 0xab, sizeof(pl));
	rec_build_data(torn, (const uint8_t *)"a", 1, 1, 0, 3, 3, 3, pl, 100, mi_crc32(pl, 100));
	append(f, torn, n - 20);   /* header whole, body short */
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.cut_bytes, n - 20);
	assert_int_equal(f->res.records, 3);
	assert_true(zero_from(f, 0, end));
	assert_int_equal(durable_of(f, "a"), 2);
	/* a second start finds nothing more to cut */
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.cut_bytes, 0);
}

/* Whole records whose write did not reach its MARK were never acked: they
 * are still in the ring and written again, so the log drops them. */
static void test_whole_records_without_a_mark_are_cut(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 2, 1);
	uint64_t end = f->mark_end, pos = f->mark_pos;
	batch(f, "late", 100, 3, 0);
	uint64_t unmarked = f->w.lsn - end;
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.cut_bytes, unmarked);
	assert_int_equal(f->res.pos[0], pos);
	assert_true(zero_from(f, 0, end));
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"late", 4), -ENOENT);
}

static void test_ring_positions_come_from_the_last_mark(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 1, 1);
	batch(f, "a", 2, 4, 1);
	uint64_t pos = f->mark_pos;
	/* a MARK written for another shm region (ring epoch) moves nothing */
	batch_id(f, "a", 6, 1, 1, f->ctl->shm_id ^ 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.pos[0], pos);
	/* the ring head behind the log: the region belongs to another log */
	shm_store_release(&shm_ring_hdr(f->ctl, 0)->head, pos - 8);
	assert_int_equal(recover(f), -EPROTO);
	assert_non_null(strstr(f->err, "ring 0"));
}

/* No MARK after the checkpoint: the positions are the meta's. */
static void test_positions_from_meta_when_no_mark_follows(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 3, 1);
	store_meta(f, f->mark_end, f->mark_pos);
	batch(f, "a", 4, 1, 0);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.pos[0], f->mark_pos);
	assert_int_equal(f->res.records, 1);
}

/* A fresh region: devices from data/devices, then the log after the
 * checkpoint; records before the checkpoint are not read again. */
static void test_devices_from_checkpoint_plus_log_after_it(void **state)
{
	struct fix *f = *state;
	open_log(f);
	uint64_t old = batch(f, "old", 1, 3, 1);
	uint64_t ckpt = f->mark_end;
	store_devices(f, ckpt, "only-in-ckpt", 42);
	store_meta(f, ckpt, f->mark_pos);
	batch(f, "old", 4, 2, 1);
	batch(f, "new", 7, 1, 1);
	xor_at(f, 0, old + REC_HDR_LEN + 5, 0xff);   /* damage before the checkpoint: never read */
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.devices_loaded, 1);
	assert_int_equal(f->res.records, 2 + 1 + 1 + 1);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(durable_of(f, "only-in-ckpt"), 42);
	assert_int_equal(durable_of(f, "old"), 5);
	assert_int_equal(durable_of(f, "new"), 7);
}

/* A devices file newer than the log (cut since) is ignored and the seqs
 * come from the whole log, before the checkpoint too. */
static void test_stale_devices_file_means_a_whole_log_scan(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "early", 1, 3, 1);
	uint64_t ckpt = f->mark_end;
	store_meta(f, ckpt, f->mark_pos);
	batch(f, "late", 9, 1, 1);
	store_devices(f, f->mark_end + 1, "ghost", 99);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.devices_loaded, 0);
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"ghost", 5), -ENOENT);
	assert_int_equal(durable_of(f, "early"), 3);
	assert_int_equal(durable_of(f, "late"), 9);
}

/* A whole-log scan for the seqs (no usable devices file) meets a segment
 * before the checkpoint cut to less than its header, and one with a
 * header of another log: each is skipped and named, never read past its
 * end; the seqs come from the rest. */
static void test_whole_log_scan_skips_and_names_a_headerless_early_segment(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "first", 1, 80, 1);   /* past the first page: read past EOF faults */
	uint64_t seg0 = f->w.seg_first;
	rotate(f);
	batch(f, "second", 1, 2, 1);
	uint64_t seg1 = f->w.seg_first;
	rotate(f);
	batch(f, "third", 5, 1, 1);
	store_meta(f, f->mark_end, f->mark_pos);
	char path[128];
	seg_file(f, seg0, path, sizeof(path));
	assert_int_equal(truncate(path, 10), 0);
	seg_file(f, seg1, path, sizeof(path));
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t hdr[SEG_HDR_LEN];
	seg_hdr_build(hdr, seg1, LOG_ID ^ 1, 1, 0);
	assert_int_equal(pwrite(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.devices_loaded, 0);
	char name[SEG_NAME_LEN];
	seg_name(seg0, name);
	assert_string_equal(f->res.damaged_seg, name);
	assert_int_equal(durable_of(f, "first"), 0);
	assert_int_equal(durable_of(f, "second"), 0);
	assert_int_equal(durable_of(f, "third"), 5);
}

/* A restarted flusherd on a live region (ready): the table is kept, never
 * lowered, and data/devices is not read. */
static void test_live_region_keeps_its_table(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "ahead", 1, 2, 1);
	batch(f, "behind", 5, 3, 1);
	store_devices(f, 0, "from-file", 7);
	int a = devtab_insert(f->ctl, (const uint8_t *)"ahead", 5);
	int b = devtab_insert(f->ctl, (const uint8_t *)"behind", 6);
	shm_dev(f->ctl, (uint32_t)a)->last_durable = 50;
	shm_dev(f->ctl, (uint32_t)a)->last_accepted = 60;
	shm_dev(f->ctl, (uint32_t)b)->last_accepted = 1;
	shm_store_release(&shm_ring_hdr(f->ctl, 0)->released, f->mark_pos);   /* both batches synced */
	shm_store_release(&f->ctl->ready, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.devices_loaded, 0);
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"from-file", 9), -ENOENT);
	assert_int_equal(shm_dev(f->ctl, (uint32_t)a)->last_durable, 50);
	assert_int_equal(shm_dev(f->ctl, (uint32_t)a)->last_accepted, 60);
	assert_int_equal(shm_dev(f->ctl, (uint32_t)b)->last_durable, 7);
	assert_int_equal(shm_dev(f->ctl, (uint32_t)b)->last_accepted, 7);
}

/* A live region says which batches were synced: each ring's `released`
 * moves right after a successful fdatasync.  Whole batches with MARKs past
 * it (written, never synced by the flusherd that died) are cut, not
 * trusted, and the rings resume where the synced part ends, so those
 * records are written again.  A page whose writeback failed keeps its
 * bytes in the cache, clean, so a later fdatasync reports nothing: the
 * bytes may not be on disk at all. */
static void test_live_region_cuts_batches_it_never_synced(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "d", 1, 3, 1);
	uint64_t synced = f->mark_end, pos = f->mark_pos;
	batch(f, "d", 4, 2, 1);
	batch(f, "d", 6, 2, 1);
	shm_store_release(&shm_ring_hdr(f->ctl, 0)->released, pos);
	shm_store_release(&f->ctl->ready, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, synced);
	assert_int_equal(f->res.pos[0], pos);
	assert_true(zero_from(f, 0, synced));
	assert_int_equal(durable_of(f, "d"), 3);
}

/* A flusherd killed after publishing `released` but before the durable LSN
 * (devices may already be acked: last_durable comes in between): the synced
 * batch is kept, not cut, whatever durable_lsn still says. */
static void test_live_region_keeps_a_synced_batch_not_yet_published_durable(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "k", 1, 3, 1);
	uint64_t old = f->mark_end;
	batch(f, "k", 4, 2, 1);
	shm_store_release(&f->ctl->durable_lsn, old);
	shm_store_release(&shm_ring_hdr(f->ctl, 0)->released, f->mark_pos);
	shm_store_release(&f->ctl->ready, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.cut_bytes, 0);
	assert_int_equal(f->res.pos[0], f->mark_pos);
	assert_int_equal(durable_of(f, "k"), 5);
}

/* Two segments, the first complete: damage in it is lost durable data. */
static void test_corrupt_record_in_a_non_last_segment_is_an_error(void **state)
{
	struct fix *f = *state;
	open_log(f);
	uint64_t r1 = batch(f, "a", 1, 3, 1);
	uint64_t second = f->w.lsn;
	rotate(f);
	batch(f, "a", 4, 2, 1);
	xor_at(f, 0, r1 + REC_HDR_LEN + 3, 0x10);
	assert_int_equal(recover(f), -EBADMSG);
	assert_non_null(strstr(f->err, "00000000000000000000.seg"));
	assert_non_null(strstr(f->err, "inside the log"));
	/* the same damage before the checkpoint is never read */
	store_meta(f, second, f->mark_pos);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.seg_first, second);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.records, 3);
}

static void test_last_segment_with_a_short_header_is_dropped(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 3, 1);
	uint64_t end = f->mark_end;
	wal_close(&f->w);
	char path[128];
	seg_file(f, end, path, sizeof(path));
	static const size_t sizes[] = { 0, 30, SEG_HDR_LEN };
	for (size_t i = 0; i < 3; i++) {
		uint8_t hdr[SEG_HDR_LEN];
		seg_hdr_build(hdr, end, LOG_ID, 0, 0);
		hdr[20] ^= 1;                           /* bad crc when whole */
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, hdr, sizes[i]), (ssize_t)sizes[i]);
		close(fd);
		assert_int_equal(recover(f), 0);
		assert_int_equal(access(path, F_OK), -1);
		assert_false(f->res.new_log);
		assert_int_equal(f->res.seg_first, 0);
		assert_int_equal(f->res.end_lsn, end);
		assert_int_equal(durable_of(f, "a"), 3);
	}
	/* a bad header in front of data is damage, not a dead rotation */
	uint8_t junk[SEG_HDR_LEN + 100];
	memset(junk, 7, sizeof(junk));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(recover(f), -EBADMSG);
	assert_non_null(strstr(f->err, "bad segment header"));
}

/* A rotation died before writing the header of the segment that starts at
 * the checkpoint LSN (the checkpoint thread ran between the sync before the
 * rotation and the crash): recovery must end the log at the checkpoint, in
 * the segment before. */
static void test_dead_rotation_at_the_checkpoint_is_dropped(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 3, 1);
	uint64_t end = f->mark_end;
	store_meta(f, end, f->mark_pos);
	wal_close(&f->w);
	char path[128];
	seg_file(f, end, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	close(fd);
	int r = recover(f);
	if (r < 0)
		fail_msg("recover_run: %d: %s", r, f->err);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.pos[0], f->mark_pos);
	assert_true(f->res.new_log || f->res.seg_first == 0);
	assert_int_equal(wal_open(&f->w, f->wal_dir, f->res.log_id, SEG_MAX, f->res.seg_first, f->res.end_lsn,
				  f->res.new_log), 0);
}

/* The only segment is a dead rotation: a new log where it was. */
static void test_only_segment_with_no_header_starts_a_new_log(void **state)
{
	struct fix *f = *state;
	char path[128];
	store_meta(f, 4096, 0);
	seg_file(f, 4096, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	close(fd);
	assert_int_equal(recover(f), 0);
	assert_true(f->res.new_log);
	assert_int_equal(f->res.seg_first, 4096);
	assert_int_equal(f->res.end_lsn, 4096);
	assert_int_equal(f->res.log_id, LOG_ID);
	assert_int_equal(access(path, F_OK), -1);
}

/* A last segment with no MARK (its first write torn) goes whole. */
static void test_last_segment_without_a_mark_is_removed(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 2, 1);
	uint64_t end = f->mark_end;
	rotate(f);
	batch(f, "a", 3, 4, 0);
	uint64_t lost = f->w.lsn - end;
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.seg_first, 0);
	assert_int_equal(f->res.end_lsn, end);
	/* counted to the last non-zero byte: the last record's padding is not */
	assert_in_range(f->res.cut_bytes, lost - 7, lost);
	char path[128];
	seg_file(f, end, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(durable_of(f, "a"), 2);
}

static void test_segment_of_another_log_is_refused(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 1, 1);
	struct meta m = { .nrings = 1, .log_id = LOG_ID + 1, .ckpt_lsn = 0 };
	assert_int_equal(meta_store(f->dir, &m), 0);
	assert_int_equal(recover(f), -EBADMSG);
	assert_non_null(strstr(f->err, "another log"));
}

/* What recovery returns opens the WAL where the next write belongs. */
static void test_recovered_log_reopens_and_grows(void **state)
{
	struct fix *f = *state;
	uint8_t junk[64];
	open_log(f);
	batch(f, "a", 1, 2, 1);
	memset(junk, 0x33, sizeof(junk));
	append(f, junk, sizeof(junk));
	assert_int_equal(recover(f), 0);
	reopen_log(f);
	assert_int_equal(f->pos, f->mark_pos);      /* the ring resumes there */
	batch(f, "a", 3, 2, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.cut_bytes, 0);
	assert_int_equal(f->res.records, 2 + 1 + 2 + 1);
	assert_int_equal(durable_of(f, "a"), 4);
}

static int replay(struct fix *f, int repair)
{
	struct settings s;
	memset(&s, 0, sizeof(s));
	snprintf(s.data_dir, sizeof(s.data_dir), "%s", f->dir);
	snprintf(s.instance, sizeof(s.instance), "%s-none", f->inst);   /* no stage runs */
	fflush(NULL);
	return replay_run(&s, 0, repair);
}

static void test_replay_finds_damage_and_repair_cuts_at_the_last_mark(void **state)
{
	struct fix *f = *state;
	uint8_t junk[100];
	open_log(f);
	batch(f, "a", 1, 2, 1);
	rotate(f);
	batch(f, "a", 3, 2, 1);
	uint64_t end = f->mark_end, seg2 = f->w.seg_first;
	assert_int_equal(replay(f, 0), 0);
	batch(f, "a", 5, 1, 0);                   /* whole, but no MARK */
	memset(junk, 0x44, sizeof(junk));
	append(f, junk, sizeof(junk));            /* then garbage */
	wal_close(&f->w);
	assert_int_equal(replay(f, 0), 1);
	assert_int_equal(replay(f, 1), 0);
	assert_int_equal(replay(f, 0), 0);
	assert_int_equal(recover(f), 0);          /* exactly what a restart keeps */
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.cut_bytes, 0);
	/* damage in the first segment: the second goes too */
	xor_at(f, 0, REC_HDR_LEN + 1, 0x01);
	assert_int_equal(replay(f, 0), 1);
	assert_int_equal(replay(f, 1), 0);
	char path[128];
	seg_file(f, seg2, path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(replay(f, 0), 0);
}

/* ---- version 2: bound MARKs, recycled segments ---- */

static void bytes_at(const struct fix *f, uint64_t seg_first, uint64_t lsn, void *b, size_t n, int write)
{
	char path[128];
	seg_file(f, seg_first, path, sizeof(path));
	int fd = open(path, write ? O_RDWR : O_RDONLY);
	assert_true(fd >= 0);
	off_t off = (off_t)(SEG_HDR_LEN + lsn - seg_first);
	if (write)
		assert_int_equal(pwrite(fd, b, n, off), (ssize_t)n);
	else
		assert_int_equal(pread(fd, b, n, off), (ssize_t)n);
	close(fd);
}

#define BATCH_RECS 4
#define REC_PLEN 40
#define REC_LEN (REC_HDR_LEN + 3 + REC_PLEN + 5)   /* a 3-byte device id: 88 bytes */

/* A log whose active segment is a recycled file: segment 0 full of
 * batches of device "old" (4 records of 88 bytes and a MARK each),
 * segment 1 one batch of "mid", then segment 0 retired and recycled as
 * the third segment.  New batches of 4 records of the same size land
 * exactly where the old ones were: every stale record and MARK sits at a
 * record boundary of the new data, the worst case for a reader.  Returns
 * the new segment's first LSN. */
static uint64_t recycled_log(struct fix *f)
{
	f->plen = REC_PLEN;
	open_log(f);
	uint64_t seq = 1;
	while (f->w.lsn + BATCH_RECS * REC_LEN + MARK_LEN <= SEG_MAX - 4096) {
		batch(f, "old", seq, BATCH_RECS, 1);
		seq += BATCH_RECS;
	}
	assert_int_equal(rec_size(3, REC_PLEN), REC_LEN);
	rotate(f);
	batch(f, "mid", 1, BATCH_RECS, 1);
	char name[SEG_NAME_LEN];
	seg_name(0, name);
	assert_int_equal(wal_recycle(f->wal_dir, name, SEG_MAX, NULL), 0);
	assert_int_equal(wal_rotate(&f->w), 0);    /* no spare made: takes the recycled file */
	assert_true(f->w.recycled);
	seg_chain_start(&f->chain, f->w.link);
	return f->w.seg_first;
}

/* A recycled segment nothing was written to yet (a stop right after the
 * rotation): its data ends at once, at the zeros written with its header,
 * though segment 0's records follow them (seen in CI: a replay read those
 * as damage when only the header was written). */
static void test_an_empty_recycled_segment_is_empty(void **state)
{
	struct fix *f = *state;
	if (!f->prealloc)
		skip();
	uint64_t s2 = recycled_log(f);
	uint8_t b[REC_HDR_LEN];
	bytes_at(f, s2, s2, b, sizeof(b), 0);
	for (int i = 0; i < REC_HDR_LEN; i++)
		assert_int_equal(b[i], 0);
	assert_false(zero_from(f, s2, s2 + REC_HDR_LEN));   /* the old records are still there */
	assert_int_equal(replay(f, 0), 0);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, s2);
}

/* Crash after the last synced write of a recycled segment: the log ends
 * there, none of the stale records of segment 0 is read (its device is
 * unknown after a fresh rebuild), and only the 40-byte end mark is
 * written over them. */
static void test_recycled_segment_recovers_to_its_last_write(void **state)
{
	struct fix *f = *state;
	if (!f->prealloc)
		skip();                /* only a whole preallocated segment is recycled */
	uint64_t s2 = recycled_log(f);
	batch(f, "new", 1, BATCH_RECS, 1);
	batch(f, "new", 5, BATCH_RECS, 1);
	batch(f, "new", 9, BATCH_RECS, 1);
	uint64_t end = f->mark_end;
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.seg_first, s2);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.cut_bytes, 0);
	assert_int_equal(f->res.records, (1 + 3) * (BATCH_RECS + 1));   /* from segment 1 (no checkpoint) */
	assert_int_equal(durable_of(f, "new"), 12);
	assert_int_equal(durable_of(f, "mid"), 4);
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"old", 3), -ENOENT);
	/* the end: 40 zero bytes, then segment 0's records, left alone */
	uint8_t b[REC_HDR_LEN + 8];
	bytes_at(f, s2, end, b, sizeof(b), 0);
	for (int i = 0; i < REC_HDR_LEN; i++)
		assert_int_equal(b[i], 0);
	assert_false(zero_from(f, s2, end));
	assert_int_equal(replay(f, 0), 0);         /* stale bytes after the end are no damage */
	/* it goes on from there, and a second crash agrees */
	reopen_log(f);
	batch(f, "new", 13, BATCH_RECS, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(durable_of(f, "new"), 16);
	assert_int_equal(replay(f, 0), 0);
}

/* A write whose pages did not all reach the disk (a power cut before its
 * fdatasync): where one record's page was lost, the bytes of segment 0's
 * record at the same place are a valid record, and the write's MARK is
 * whole; only the MARK's digest tells.  The log ends before that write. */
static void test_recycled_lost_page_inside_a_write_is_cut(void **state)
{
	struct fix *f = *state;
	if (!f->prealloc)
		skip();                /* only a whole preallocated segment is recycled */
	uint64_t s2 = recycled_log(f);
	batch(f, "new", 1, BATCH_RECS, 1);
	batch(f, "new", 5, BATCH_RECS, 1);
	uint64_t end = f->mark_end;
	uint8_t stale[REC_LEN];
	bytes_at(f, s2, end + REC_LEN, stale, sizeof(stale), 0);   /* what record 2 of the next write covers */
	assert_int_equal(seg_rec_check(stale, sizeof(stale), 4096), SEG_REC_OK);
	batch(f, "new", 9, BATCH_RECS, 1);
	bytes_at(f, s2, end + REC_LEN, stale, sizeof(stale), 1);   /* that page never reached the disk */
	assert_int_equal(replay(f, 0), 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, end);
	assert_int_equal(f->res.cut_bytes, BATCH_RECS * REC_LEN);  /* the whole records the walk passed */
	assert_int_equal(durable_of(f, "new"), 8);
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"old", 3), -ENOENT);
	assert_int_equal(replay(f, 0), 0);
}

/* The same write lost whole, or only its MARK's page: segment 0's MARK
 * at that place is whole and valid, but names its own (older) LSN. */
static void test_recycled_stale_mark_is_cut(void **state)
{
	struct fix *f = *state;
	if (!f->prealloc)
		skip();                /* only a whole preallocated segment is recycled */
	uint64_t s2 = recycled_log(f);
	batch(f, "new", 1, BATCH_RECS, 1);
	uint64_t end = f->mark_end;
	uint64_t mark_at = end + BATCH_RECS * REC_LEN;
	uint8_t stale[BATCH_RECS * REC_LEN + MARK_LEN];
	bytes_at(f, s2, end, stale, sizeof(stale), 0);
	const struct rec_hdr *sm = (const struct rec_hdr *)(const void *)(stale + BATCH_RECS * REC_LEN);
	assert_int_equal(seg_rec_check((const uint8_t *)sm, MARK_LEN, 4096), SEG_REC_OK);
	assert_int_equal(sm->type, REC_MARK);
	for (int whole = 0; whole < 2; whole++) {
		batch(f, "new", 5, BATCH_RECS, 1);
		if (whole)
			bytes_at(f, s2, end, stale, sizeof(stale), 1);
		else
			bytes_at(f, s2, mark_at, stale + BATCH_RECS * REC_LEN, MARK_LEN, 1);
		assert_int_equal(recover(f), 0);
		assert_int_equal(f->res.end_lsn, end);
		assert_int_equal(durable_of(f, "new"), 4);
		assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"old", 3), -ENOENT);
		reopen_log(f);
	}
}

/* A write cut by one recovery, whose bytes stayed where a later write
 * went and was lost: A, B1, C1 written; the log rewound to A's end and
 * B2, C2 written there instead (same sizes); C2 lost, C1's bytes back.
 * C1 is whole and sits at its own LSN with its own digest, but it
 * followed B1, not B2: its link says so, and the log ends after B2. */
static void test_a_write_that_followed_another_write_is_cut(void **state)
{
	struct fix *f = *state;
	f->plen = REC_PLEN;
	open_log(f);
	batch(f, "aaa", 1, BATCH_RECS, 1);
	uint64_t a_end = f->mark_end, a_pos = f->mark_pos;
	batch(f, "bb1", 1, BATCH_RECS, 1);
	uint64_t b_end = f->mark_end;
	batch(f, "cc1", 1, BATCH_RECS, 1);
	uint64_t c_end = f->mark_end;
	uint8_t c1[BATCH_RECS * REC_LEN + MARK_LEN];
	assert_int_equal(c_end - b_end, sizeof(c1));
	bytes_at(f, 0, b_end, c1, sizeof(c1), 0);
	/* rewound to A's end, as a recovery leaves it */
	wal_close(&f->w);
	assert_int_equal(wal_open(&f->w, f->wal_dir, LOG_ID, SEG_MAX, 0, a_end, 0), 0);
	seg_chain_start(&f->chain, f->w.link);
	f->pos = a_pos;
	batch(f, "bb2", 1, BATCH_RECS, 1);
	assert_int_equal(f->mark_end, b_end);
	batch(f, "cc2", 1, BATCH_RECS, 1);
	bytes_at(f, 0, b_end, c1, sizeof(c1), 1);
	assert_int_equal(replay(f, 0), 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, b_end);
	assert_int_equal(durable_of(f, "bb2"), 4);
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"cc1", 3), -ENOENT);
	assert_int_equal(devtab_lookup(f->ctl, (const uint8_t *)"bb1", 3), -ENOENT);
}

/* Recovery starts the chain at the MARK that ends at the checkpoint: a
 * checkpoint that is not the end of a write means damaged durable data. */
static void test_checkpoint_must_end_a_write(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "a", 1, 3, 1);
	uint64_t ck = f->mark_end, pos = f->mark_pos;
	batch(f, "a", 4, 3, 1);
	store_meta(f, ck, pos);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.records, 3 + 1);
	xor_at(f, 0, ck - 4, 0x01);                /* the MARK before the checkpoint */
	assert_int_equal(recover(f), -EBADMSG);
	assert_non_null(strstr(f->err, "no write ends at the checkpoint"));
}

/* A log whose first segments were retired: it starts at the first one
 * left, not at LSN 0, for recovery (with a checkpoint, and without one:
 * from the first segment) and for --replay. */
static void test_log_whose_first_segments_were_retired(void **state)
{
	struct fix *f = *state;
	open_log(f);
	batch(f, "r", 1, 3, 1);
	rotate(f);
	batch(f, "r", 4, 3, 1);
	rotate(f);
	batch(f, "r", 7, 3, 1);
	uint64_t s2 = f->w.seg_first;
	store_meta(f, f->mark_end, f->mark_pos);
	char path[128];
	seg_file(f, 0, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(replay(f, 0), 0);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.seg_first, s2);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	/* no meta: the scan starts at the first segment left */
	char meta[128];
	snprintf(meta, sizeof(meta), "%s/meta", f->dir);
	assert_int_equal(unlink(meta), 0);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(f->res.records, 2 * (3 + 1));
	assert_int_equal(durable_of(f, "r"), 9);
	/* and it goes on */
	reopen_log(f);
	batch(f, "r", 10, 2, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(replay(f, 0), 0);
}

/* A log written by an older build (version-1 segments, MARKs without a
 * binding) still recovers and replays; this build goes on in a new,
 * version-2 segment rather than appending to it. */
static void test_version_1_log_recovers_and_goes_on_in_version_2(void **state)
{
	struct fix *f = *state;
	uint8_t hdr[SEG_HDR_LEN], pl[32];
	size_t len = 0;
	uint64_t pos = 0;
	for (uint64_t seq = 1; seq <= 5; seq++) {
		memset(pl, (int)seq, sizeof(pl));
		rec_build_data(f->buf + len, (const uint8_t *)"v1", 2, 1, 0, seq, seq, seq, pl, sizeof(pl),
			       mi_crc32(pl, sizeof(pl)));
		len += rec_size(2, sizeof(pl));
		pos += rec_size(2, sizeof(pl));
	}
	/* a version-1 MARK: shm_id, nrings, 0, pos */
	struct rec_hdr *m = (struct rec_hdr *)(void *)(f->buf + len);
	memset(m, 0, rec_size(0, REC_MARK_PLEN_V1(1)));
	m->type = REC_MARK;
	m->plen = REC_MARK_PLEN_V1(1);
	mi_put64(f->buf + len + REC_HDR_LEN, f->ctl->shm_id);
	mi_put32(f->buf + len + REC_HDR_LEN + 8, 1);
	mi_put64(f->buf + len + REC_HDR_LEN + 16, pos);
	m->crc = rec_crc(m);
	len += rec_size(0, REC_MARK_PLEN_V1(1));
	seg_hdr_build(hdr, 0, LOG_ID, 1, 0);
	mi_put32(hdr + 8, 1);
	mi_put32(hdr + 60, mi_crc32(hdr, 60));
	char path[128];
	seg_file(f, 0, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, hdr, SEG_HDR_LEN), SEG_HDR_LEN);
	assert_int_equal(write(fd, f->buf, len), (ssize_t)len);
	if (f->prealloc)
		assert_int_equal(ftruncate(fd, SEG_HDR_LEN + SEG_MAX), 0);
	close(fd);
	shm_store_release(&shm_ring_hdr(f->ctl, 0)->head, pos);
	assert_int_equal(replay(f, 0), 0);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, len);
	assert_int_equal(f->res.pos[0], pos);
	assert_int_equal(durable_of(f, "v1"), 5);
	reopen_log(f);
	assert_int_equal(f->w.version, 1);
	assert_int_equal(wal_room(&f->w), 0);      /* full for this build */
	rotate(f);
	assert_int_equal(f->w.version, SEG_VERSION);
	batch(f, "v2", 1, 2, 1);
	assert_int_equal(recover(f), 0);
	assert_int_equal(f->res.end_lsn, f->mark_end);
	assert_int_equal(durable_of(f, "v1"), 5);
	assert_int_equal(durable_of(f, "v2"), 2);
	assert_int_equal(replay(f, 0), 0);
}

int main(void)
{
#define T(fn) { #fn " (growing segments)", fn, setup_grow, teardown, NULL }, \
	      { #fn " (preallocated segments)", fn, setup_prealloc, teardown, NULL }
	const struct CMUnitTest tests[] = {
		T(test_empty_wal_dir_starts_a_new_log),
		T(test_log_ends_at_the_last_mark),
		T(test_partial_record_after_the_last_mark_is_cut),
		T(test_whole_records_without_a_mark_are_cut),
		T(test_ring_positions_come_from_the_last_mark),
		T(test_positions_from_meta_when_no_mark_follows),
		T(test_devices_from_checkpoint_plus_log_after_it),
		T(test_stale_devices_file_means_a_whole_log_scan),
		T(test_whole_log_scan_skips_and_names_a_headerless_early_segment),
		T(test_live_region_keeps_its_table),
		T(test_live_region_cuts_batches_it_never_synced),
		T(test_live_region_keeps_a_synced_batch_not_yet_published_durable),
		T(test_corrupt_record_in_a_non_last_segment_is_an_error),
		T(test_last_segment_with_a_short_header_is_dropped),
		T(test_dead_rotation_at_the_checkpoint_is_dropped),
		T(test_only_segment_with_no_header_starts_a_new_log),
		T(test_last_segment_without_a_mark_is_removed),
		T(test_segment_of_another_log_is_refused),
		T(test_recovered_log_reopens_and_grows),
		T(test_replay_finds_damage_and_repair_cuts_at_the_last_mark),
		T(test_recycled_segment_recovers_to_its_last_write),
		T(test_recycled_lost_page_inside_a_write_is_cut),
		T(test_recycled_stale_mark_is_cut),
		T(test_an_empty_recycled_segment_is_empty),
		T(test_a_write_that_followed_another_write_is_cut),
		T(test_checkpoint_must_end_a_write),
		T(test_version_1_log_recovers_and_goes_on_in_version_2),
		T(test_log_whose_first_segments_were_retired),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
