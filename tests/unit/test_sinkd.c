/* test_sinkd — sinkd's storage side: committed offsets (common/offset.h),
 * the WAL reader (sinkd/reader.h) over real segments, and the disk sink
 * (sinkd/sink_disk.c, descriptor `sink_disk`) across a simulated crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/testdir.h"
#include "common/config.h"
#include "common/frame.h"
#include "common/offset.h"
#include "common/record.h"
#include "common/seg.h"
#include "flusherd/wal.h"
#include "sinkd/reader.h"
#include "sinkd/instance.h"
#include "sinkd/sink.h"

#define SEG_MAX (16u << 10)

extern const struct sink_desc sink_disk;

struct fix {
	char dir[64], wal_dir[80], sinks[80];
	struct wal w;
	_Alignas(8) uint8_t buf[1 << 16];
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-sinkd-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->dir);
	snprintf(f->sinks, sizeof(f->sinks), "%s/sinks", f->dir);
	if (mkdir(f->wal_dir, 0700) < 0 || mkdir(f->sinks, 0700) < 0) {
		free(f);
		return -1;
	}
	f->w.fd = f->w.dirfd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	wal_close(&f->w);
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

static void xor_byte(const char *path, off_t off, uint8_t x)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= x;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static off_t size_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- offset ---- */

static void test_offset_round_trip(void **state)
{
	struct fix *f = *state;
	uint8_t blob[300];
	void *got = NULL;
	size_t len = 0;
	uint64_t lsn = 0;
	char tmp[128];
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 3);
	assert_int_equal(offset_load(f->sinks, "disk", &lsn, &got, &len), -ENOENT);
	assert_int_equal(offset_store(f->sinks, "disk", 123456789012ull, blob, sizeof(blob)), 0);
	assert_int_equal(offset_load(f->sinks, "disk", &lsn, &got, &len), 0);
	assert_int_equal(lsn, 123456789012ull);
	assert_int_equal(len, sizeof(blob));
	assert_memory_equal(got, blob, sizeof(blob));
	free(got);
	snprintf(tmp, sizeof(tmp), "%s/disk.offset.tmp", f->sinks);
	assert_int_equal(access(tmp, F_OK), -1);
	/* the next store replaces it whole */
	assert_int_equal(offset_store(f->sinks, "disk", 5, blob, 10), 0);
	assert_int_equal(offset_load(f->sinks, "disk", &lsn, &got, &len), 0);
	assert_int_equal(lsn, 5);
	assert_int_equal(len, 10);
	free(got);
}

/* A sink with no resume state stores (lsn, no blob): it must load back. */
static void test_offset_without_a_blob_round_trips(void **state)
{
	struct fix *f = *state;
	void *got = (void *)1;
	size_t len = 99;
	uint64_t lsn = 0;
	assert_int_equal(offset_store(f->sinks, "nats", 4242, NULL, 0), 0);
	assert_int_equal(offset_load(f->sinks, "nats", &lsn, &got, &len), 0);
	assert_int_equal(lsn, 4242);
	assert_null(got);
	assert_int_equal(len, 0);
}

static void test_damaged_offset_is_ebadmsg(void **state)
{
	struct fix *f = *state;
	uint8_t blob[16] = "resume-state-123";
	char path[128];
	void *got;
	size_t len;
	uint64_t lsn = 7;
	snprintf(path, sizeof(path), "%s/disk.offset", f->sinks);
	assert_int_equal(offset_store(f->sinks, "disk", 99, blob, sizeof(blob)), 0);
	for (off_t i = 0; i < 24 + (off_t)sizeof(blob); i++) {
		xor_byte(path, i, 0x20);
		got = NULL;
		int r = offset_load(f->sinks, "disk", &lsn, &got, &len);
		if (r != -EBADMSG)
			fail_msg("byte %ld flipped: offset_load returned %d", (long)i, r);
		assert_int_equal(lsn, 7);                 /* untouched on failure */
		xor_byte(path, i, 0x20);
	}
	assert_int_equal(truncate(path, 24 + 8), 0);
	assert_int_equal(offset_load(f->sinks, "disk", &lsn, &got, &len), -EBADMSG);
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(offset_load(f->sinks, "disk", &lsn, &got, &len), -EBADMSG);
}

/* ---- reader ---- */

/* Appends n DATA records (seqs seq0..) and a MARK as one synced write. */
static void log_batch(struct fix *f, uint64_t seq0, int n)
{
	uint8_t pl[256];
	size_t len = 0;
	struct seg_chain ch;
	struct rec_mark_bind b;
	seg_chain_start(&ch, f->w.link);
	for (int i = 0; i < n; i++) {
		uint64_t seq = seq0 + (uint64_t)i;
		uint32_t plen = (uint32_t)(seq * 37 % 200) + 1;
		for (uint32_t k = 0; k < plen; k++)
			pl[k] = (uint8_t)(seq ^ k);
		rec_build_data(f->buf + len, (const uint8_t *)"rd", 2, 3, 0, seq, seq, seq, pl, plen, mi_crc32(pl, plen));
		seg_chain_add(&ch, (const struct rec_hdr *)(const void *)(f->buf + len));
		len += rec_size(2, plen);
	}
	uint64_t pos = seq0;
	seg_chain_bind(&ch, f->w.lsn + len, &b);
	rec_build_mark(f->buf + len, 1, 1, &pos, 0, &b);
	uint32_t mark_crc = ((const struct rec_hdr *)(const void *)(f->buf + len))->crc;
	len += rec_size(0, REC_MARK_PLEN(1));
	struct iovec v = { f->buf, len };
	assert_int_equal(wal_append(&f->w, &v, 1, len, mark_crc), 0);
	assert_int_equal(wal_sync(&f->w), 0);
}

/* Two segments: seqs 1..40 in the first, 41..60 in the second. */
static void two_segments(struct fix *f, int prealloc, uint64_t *boundary)
{
	if (prealloc)
		assert_int_equal(wal_make_spare(f->wal_dir, SEG_MAX), 0);
	assert_int_equal(wal_open(&f->w, f->wal_dir, 1, SEG_MAX, 0, 0, 1), 0);
	for (int b = 0; b < 4; b++)
		log_batch(f, 1 + 10 * (uint64_t)b, 10);
	*boundary = f->w.lsn;
	if (prealloc)
		assert_int_equal(wal_make_spare(f->wal_dir, SEG_MAX), 0);
	assert_int_equal(wal_rotate(&f->w), 0);
	log_batch(f, 41, 10);
	log_batch(f, 51, 10);
}

static void check_rec(const struct rec_hdr *h, uint64_t seq)
{
	assert_non_null(h);
	assert_int_equal(h->type, REC_DATA);
	assert_int_equal(h->seq, seq);
	assert_int_equal(rec_crc(h), h->crc);
}

static void reader_across_segments(struct fix *f, int prealloc)
{
	uint64_t boundary, lsn = 0, seq = 1;
	const struct rec_hdr *last_of_first = NULL, *h;
	struct reader r;
	int err;
	two_segments(f, prealloc, &boundary);
	uint64_t end = f->w.synced_lsn;
	reader_init(&r, f->wal_dir, SEG_MAX);
	while (lsn < end) {
		uint32_t moves = r.moves;
		h = reader_at(&r, lsn, &err);
		assert_int_equal(err, 0);
		assert_non_null(h);
		if (lsn == boundary) {
			/* the move keeps the previous segment mapped */
			assert_int_equal(r.moves, moves + 1);
			assert_int_equal(r.seg_first, boundary);
			check_rec(last_of_first, 40);
		} else if (lsn) {
			assert_int_equal(r.moves, moves);
		}
		if (h->type == REC_DATA) {
			check_rec(h, seq++);
			if (lsn < boundary)
				last_of_first = h;
		}
		lsn += rec_total(h);
	}
	assert_int_equal(lsn, end);
	assert_int_equal(seq, 61);
	assert_int_equal(r.moves, 2);
	/* the log grows under the mapping */
	log_batch(f, 61, 3);
	h = reader_at(&r, end, &err);
	assert_int_equal(err, 0);
	check_rec(h, 61);
	assert_int_equal(r.moves, 2);
	/* back into the first segment */
	h = reader_at(&r, 0, &err);
	check_rec(h, 1);
	assert_int_equal(r.seg_first, 0);
	assert_int_equal(r.moves, 3);
	reader_close(&r);
	reader_close(&r);                      /* twice is harmless */
}

static void test_reader_across_a_segment_boundary(void **state)
{
	reader_across_segments(*state, 0);
}

static void test_reader_across_preallocated_segments(void **state)
{
	reader_across_segments(*state, 1);
}

/* Random access forward: from a mapping of the first segment to a record
 * inside the second (not its first), as for a growing segment. */
static void reader_jump(struct fix *f, int prealloc)
{
	uint64_t boundary;
	struct reader r;
	int err;
	two_segments(f, prealloc, &boundary);
	reader_init(&r, f->wal_dir, SEG_MAX);
	check_rec(reader_at(&r, 0, &err), 1);
	const struct rec_hdr *h = reader_at(&r, boundary, &err);
	check_rec(h, 41);
	uint64_t second = boundary + rec_total(h);
	reader_close(&r);
	reader_init(&r, f->wal_dir, SEG_MAX);
	check_rec(reader_at(&r, 0, &err), 1);
	h = reader_at(&r, second, &err);
	assert_int_equal(err, 0);
	check_rec(h, 42);
	assert_int_equal(r.seg_first, boundary);
	reader_close(&r);
}

static void test_reader_jumps_forward_into_a_later_segment(void **state)
{
	reader_jump(*state, 0);
}

static void test_reader_jumps_forward_past_a_preallocated_segment(void **state)
{
	reader_jump(*state, 1);
}

/* A segment removed by retention: -ENOENT, not a crash. */
static void test_reader_without_the_segment_is_enoent(void **state)
{
	struct fix *f = *state;
	uint64_t boundary;
	struct reader r;
	int err = 0;
	char path[128], name[SEG_NAME_LEN];
	two_segments(f, 0, &boundary);
	seg_name(0, name);
	snprintf(path, sizeof(path), "%s/%s", f->wal_dir, name);
	assert_int_equal(unlink(path), 0);
	reader_init(&r, f->wal_dir, SEG_MAX);
	assert_null(reader_at(&r, 0, &err));
	assert_int_equal(err, -ENOENT);
	check_rec(reader_at(&r, boundary, &err), 41);
	/* no record starts off an 8-byte boundary: refused, nothing read */
	assert_null(reader_at(&r, boundary + 5, &err));
	assert_int_equal(err, -EBADMSG);
	reader_close(&r);
}

/* A reader that waits at the end of a segment keeps it mapped; if
 * retention recycles that file as a new segment meanwhile, the file
 * under the mapping holds new records where the old segment ended: the
 * reader must notice the new header and move on to the segment that
 * really starts there. */
static void test_reader_at_the_end_of_a_recycled_segment_moves_on(void **state)
{
	struct fix *f = *state;
	uint64_t boundary, lsn = 0;
	struct reader r;
	int err;
	char name[SEG_NAME_LEN];
	two_segments(f, 1, &boundary);
	reader_init(&r, f->wal_dir, SEG_MAX);
	while (lsn < boundary) {
		const struct rec_hdr *h = reader_at(&r, lsn, &err);
		assert_non_null(h);
		lsn += rec_total(h);
	}
	assert_int_equal(r.seg_first, 0);          /* still mapped, waiting at its end */
	seg_name(0, name);
	assert_int_equal(wal_recycle(f->wal_dir, name, SEG_MAX, NULL), 0);
	assert_int_equal(wal_rotate(&f->w), 0);
	assert_true(f->w.recycled);
	uint64_t s2 = f->w.seg_first, seq = 61;
	while (f->w.lsn - s2 < boundary + 512) {
		log_batch(f, seq, 10);
		seq += 10;
	}
	const struct rec_hdr *h = reader_at(&r, boundary, &err);
	assert_int_equal(err, 0);
	check_rec(h, 41);
	assert_int_equal(r.seg_first, boundary);
	/* and on into the recycled one, read as what it now is */
	h = reader_at(&r, s2, &err);
	check_rec(h, 61);
	assert_int_equal(r.seg_first, s2);
	reader_close(&r);
}

/* ---- disk sink ---- */

struct entry {
	uint64_t lsn, seq;
	uint16_t topic;
	uint32_t plen;
};

/* Parses a topic file; every entry must be whole and its CRC right. */
static size_t parse_topic(const char *path, struct entry *out, size_t max)
{
	static uint8_t b[1 << 18];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, b, sizeof(b));
	close(fd);
	assert_true(n >= 0 && n < (ssize_t)sizeof(b));
	size_t off = 0, k = 0;
	while (off < (size_t)n) {
		assert_true(off + 48 <= (size_t)n);
		assert_memory_equal(b + off, "MIDR", 4);
		uint32_t len = mi_get32(b + off + 4);
		assert_true(off + len <= (size_t)n);
		assert_int_equal(mi_get32(b + off + len - 4), mi_crc32(b + off, len - 4));
		assert_true(k < max);
		out[k].lsn = mi_get64(b + off + 8);
		out[k].seq = mi_get64(b + off + 16);
		assert_int_equal(mi_get64(b + off + 24), out[k].seq * 10);      /* ts_ns */
		out[k].topic = mi_get16(b + off + 40);
		assert_int_equal(b[off + 42], 4);
		assert_memory_equal(b + off + 44, "disk", 4);
		out[k].plen = len - 48 - 4;
		for (uint32_t i = 0; i < out[k].plen; i++)
			assert_int_equal(b[off + 48 + i], (uint8_t)(out[k].seq + i));
		k++;
		off += len;
	}
	return k;
}

struct sinkfix {
	void *cfg;
	void *state;
	struct sink_record items[64];
	uint8_t recs[64 * 512];
	char err[SINK_ERR_LEN];
};

/* Builds n records (seqs seq0..) on topics 1 and 2, plus topic 3 when
 * with3, as delivery items at made-up LSNs. */
static void make_items(struct sinkfix *s, uint64_t seq0, size_t n, int with3)
{
	uint8_t pl[400];
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = seq0 + i;
		uint32_t plen = 300 + (uint32_t)(seq % 50);
		uint16_t topic = with3 && i % 3 == 2 ? 3 : (uint16_t)(1 + seq % 2);
		for (uint32_t k = 0; k < plen; k++)
			pl[k] = (uint8_t)(seq + k);
		rec_build_data(s->recs + off, (const uint8_t *)"disk", 4, topic, 0, seq, seq * 10, seq * 11, pl, plen,
			       mi_crc32(pl, plen));
		const struct rec_hdr *h = (const struct rec_hdr *)(const void *)(s->recs + off);
		s->items[i] = (struct sink_record){ .lsn = seq * 1000, .seq = h->seq, .ts_ns = h->ts_ns,
						    .srv_ns = h->srv_ns, .device = rec_id(h), .device_len = h->id_len,
						    .payload = rec_payload(h), .payload_len = h->plen, .topic = h->topic };
		off += rec_size(4, plen);
	}
}

static void sink_init(struct fix *f, struct sinkfix *s, const void *blob, size_t len, int want)
{
	struct sink_env env = { .abi = SINK_ABI_VERSION, .name = "disk", .data_dir = f->dir };
	s->state = NULL;
	assert_int_equal(sink_disk.init(&s->state, s->cfg, &env, blob, len, s->err), want);
}

/* The topic's files, oldest first (names sort by first LSN). */
static size_t topic_files(struct fix *f, int topic, char paths[][160], size_t max)
{
	char pattern[160], dir[100];
	snprintf(dir, sizeof(dir), "%s/sinks/disk", f->dir);
	snprintf(pattern, sizeof(pattern), "topic-%d-", topic);
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		if (!strncmp(names[i]->d_name, pattern, strlen(pattern)) && k < max)
			snprintf(paths[k++], 160, "%s/%s", dir, names[i]->d_name);
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return k;
}

static off_t topic_bytes(struct fix *f, int topic)
{
	char paths[64][160];
	size_t n = topic_files(f, topic, paths, 64);
	off_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += size_of(paths[i]);
	return sum;
}

/* Every entry of the topic files is exactly seqs first..last once, in
 * order; every file is named by the LSN of its first entry and, with
 * file_max, no larger than that unless it holds one entry. */
static void expect_entries(struct fix *f, uint64_t first, uint64_t last, int with3_from, off_t file_max)
{
	static struct entry e[256];
	uint64_t seen = 0;
	for (int t = 1; t <= 3; t++) {
		char paths[64][160];
		size_t nf = topic_files(f, t, paths, 64);
		uint64_t prev = 0;
		for (size_t k = 0; k < nf; k++) {
			size_t n = parse_topic(paths[k], e, 256);
			if (file_max && n > 1)
				assert_true(size_of(paths[k]) <= file_max);
			for (size_t i = 0; i < n; i++) {
				if (i == 0) {
					char want[40];
					snprintf(want, sizeof(want), "-%020llu.log", (unsigned long long)e[0].lsn);
					assert_non_null(strstr(paths[k], want));
				}
				assert_int_equal(e[i].topic, t);
				assert_true(e[i].seq >= first && e[i].seq <= last && e[i].seq > prev);
				assert_int_equal(e[i].lsn, e[i].seq * 1000);
				assert_int_equal(e[i].plen, 300 + e[i].seq % 50);
				if (t == 3)
					assert_true(e[i].seq >= (uint64_t)with3_from);
				prev = e[i].seq;
			}
			seen += n;
		}
	}
	assert_int_equal(seen, last - first + 1);
}

/* The disk sink's commit, its blob handed back to the caller. */
static enum sink_rc commit_blob(struct sinkfix *s, void **blob, size_t *blob_len)
{
	struct sink_commit c = { .upto = UINT64_MAX };
	uint32_t retry = 100;
	enum sink_rc rc = sink_disk.commit(s->state, &c, &retry, s->err);
	*blob = c.blob;
	*blob_len = c.blob_len;
	return rc;
}

static void disk_cfg(struct fix *f, struct sinkfix *s, const char *keys)
{
	char ini[128], err[CFG_ERR_LEN];
	cfg_t *cfg;
	snprintf(ini, sizeof(ini), "%s/sink.ini", f->dir);
	FILE *fp = fopen(ini, "w");
	assert_non_null(fp);
	fprintf(fp, "[sink.disk]\nbuffer_bytes = 4096\n%s", keys);
	fclose(fp);
	assert_int_equal(cfg_open(ini, &cfg, err), 0);
	s->cfg = calloc(1, sink_disk.cfg_size);
	struct cfg_opt rows[8];
	assert_true(sink_disk.nopts <= 8);
	assert_int_equal(instance_rows(&sink_disk, "sink.disk", rows, err), 0);
	assert_int_equal(cfg_apply(cfg, rows, sink_disk.nopts, s->cfg, err), 0);
	cfg_close(cfg);
}

/* The blob's committed size of the topic: "MDB2", count, (topic, first, size)... */
static uint64_t blob_size(const void *blob, size_t len, int topic)
{
	const uint8_t *b = blob;
	assert_int_equal(mi_get32(b), 0x3242444du);
	assert_int_equal(len, 8 + 18 * (size_t)mi_get32(b + 4));
	for (uint32_t i = 0; i < mi_get32(b + 4); i++)
		if (mi_get16(b + 8 + 18 * i) == topic)
			return mi_get64(b + 8 + 18 * i + 10);
	fail_msg("topic %d not in the blob", topic);
	return 0;
}

/* Deliver 30, commit; deliver 60 more (a new topic among them) without a
 * commit, crash; restart from the stored blob: exactly the commit; then
 * redelivered, every record once.  With file_max the files rotate. */
static void crash_and_cut_back(struct fix *f, const char *keys, off_t file_max)
{
	struct sinkfix *s = calloc(1, sizeof(*s));
	uint32_t retry = 100;
	void *blob;
	size_t blob_len;
	assert_non_null(s);
	disk_cfg(f, s, keys);

	sink_init(f, s, NULL, 0, 0);
	make_items(s, 1, 30, 0);
	assert_int_equal(sink_disk.deliver(s->state, s->items, 30, &retry, s->err), SINK_OK);
	assert_int_equal(commit_blob(s, &blob, &blob_len), SINK_OK);
	off_t committed[3];
	for (int t = 1; t <= 2; t++) {
		committed[t] = topic_bytes(f, t);
		char paths[64][160];
		size_t nf = topic_files(f, t, paths, 64);
		assert_int_equal(blob_size(blob, blob_len, t), size_of(paths[nf - 1]));
	}
	expect_entries(f, 1, 30, 0, file_max);
	/* sinkd stores (lsn, blob); the crash keeps only that */
	assert_int_equal(offset_store(f->sinks, "disk", 30000, blob, blob_len), 0);
	free(blob);

	/* more, with a new topic, never committed: part of it reaches the
	 * files (the 4 KiB buffers overflow, files rotate), then it dies */
	make_items(s, 31, 60, 1);
	assert_int_equal(sink_disk.deliver(s->state, s->items, 60, &retry, s->err), SINK_OK);
	sink_disk.exit(s->state);
	for (int t = 1; t <= 2; t++)
		assert_true(topic_bytes(f, t) > committed[t]);
	assert_true(topic_bytes(f, 3) > 0);

	/* restart from the stored blob: back to the commit exactly */
	uint64_t lsn;
	assert_int_equal(offset_load(f->sinks, "disk", &lsn, &blob, &blob_len), 0);
	assert_int_equal(lsn, 30000);
	sink_init(f, s, blob, blob_len, 0);
	free(blob);
	for (int t = 1; t <= 2; t++)
		assert_int_equal(topic_bytes(f, t), committed[t]);
	char none[1][160];
	assert_int_equal(topic_files(f, 3, none, 1), 0);
	expect_entries(f, 1, 30, 0, file_max);

	/* redelivered and committed: every record exactly once */
	assert_int_equal(sink_disk.deliver(s->state, s->items, 60, &retry, s->err), SINK_OK);
	assert_int_equal(commit_blob(s, &blob, &blob_len), SINK_OK);
	assert_int_equal(mi_get32((uint8_t *)blob + 4), 3);
	free(blob);
	sink_disk.exit(s->state);
	expect_entries(f, 1, 90, 31, file_max);

	/* a resume blob of the wrong shape is refused */
	uint8_t bad[7] = { 1, 0, 0, 0, 1, 0, 0 };
	sink_init(f, s, bad, sizeof(bad), -EBADMSG);
	assert_non_null(strstr(s->err, "damaged"));
	free(s->cfg);
	free(s);
}

static void test_disk_sink_cuts_back_to_the_commit_after_a_crash(void **state)
{
	crash_and_cut_back(*state, "file_bytes = 0\n", 0);
}

static void test_disk_sink_rotates_files_and_cuts_back_across_them(void **state)
{
	struct fix *f = *state;
	crash_and_cut_back(f, "file_bytes = 2K\n", 2048);
	char paths[64][160];
	assert_true(topic_files(f, 1, paths, 64) >= 4);
}

static void test_disk_sink_keeps_keep_files_per_topic(void **state)
{
	struct fix *f = *state;
	struct sinkfix *s = calloc(1, sizeof(*s));
	uint32_t retry = 100;
	void *blob;
	size_t blob_len;
	disk_cfg(f, s, "file_bytes = 1K\nkeep_files = 2\n");
	sink_init(f, s, NULL, 0, 0);
	make_items(s, 1, 60, 0);
	assert_int_equal(sink_disk.deliver(s->state, s->items, 60, &retry, s->err), SINK_OK);
	assert_int_equal(commit_blob(s, &blob, &blob_len), SINK_OK);
	free(blob);
	sink_disk.exit(s->state);
	char paths[64][160];
	static struct entry e[64];
	for (int t = 1; t <= 2; t++) {
		assert_int_equal(topic_files(f, t, paths, 64), 2);
		/* the newest two: the last records of the topic are there */
		size_t n = parse_topic(paths[1], e, 64);
		assert_true(n >= 1);
		assert_true(e[n - 1].seq >= 59);
	}
	free(s->cfg);
	free(s);
}

static void test_disk_sink_takes_over_unrotated_files_of_an_earlier_version(void **state)
{
	struct fix *f = *state;
	struct sinkfix *s = calloc(1, sizeof(*s));
	uint32_t retry = 100;
	void *blob;
	size_t blob_len;
	disk_cfg(f, s, "file_bytes = 0\n");
	sink_init(f, s, NULL, 0, 0);
	make_items(s, 1, 20, 0);
	assert_int_equal(sink_disk.deliver(s->state, s->items, 20, &retry, s->err), SINK_OK);
	assert_int_equal(commit_blob(s, &blob, &blob_len), SINK_OK);
	sink_disk.exit(s->state);
	/* as an earlier version left them: topic-<id>.log, and its blob form */
	uint8_t old[4 + 2 * 10];
	mi_put32(old, 2);
	for (int t = 1; t <= 2; t++) {
		char paths[4][160], legacy[160];
		assert_int_equal(topic_files(f, t, paths, 4), 1);
		snprintf(legacy, sizeof(legacy), "%s/sinks/disk/topic-%d.log", f->dir, t);
		assert_int_equal(rename(paths[0], legacy), 0);
		mi_put16(old + 4 + 10 * (t - 1), (uint16_t)t);
		mi_put64(old + 6 + 10 * (t - 1), (uint64_t)size_of(legacy) - (t == 1 ? 400 : 0));
	}
	free(blob);
	/* topic 1's blob size is an entry short of its file: cut there */
	off_t t1 = 0;
	{
		char legacy[160];
		snprintf(legacy, sizeof(legacy), "%s/sinks/disk/topic-1.log", f->dir);
		t1 = size_of(legacy);
	}
	sink_init(f, s, old, sizeof(old), 0);
	sink_disk.exit(s->state);
	char paths[4][160];
	assert_int_equal(topic_files(f, 1, paths, 4), 1);
	assert_int_equal(size_of(paths[0]), t1 - 400);
	assert_non_null(strstr(paths[0], "topic-1-00000000000000002000.log"));   /* its first entry's LSN (seq 2) */
	free(s->cfg);
	free(s);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_offset_round_trip),
		T(test_offset_without_a_blob_round_trips),
		T(test_damaged_offset_is_ebadmsg),
		T(test_reader_across_a_segment_boundary),
		T(test_reader_across_preallocated_segments),
		T(test_reader_jumps_forward_into_a_later_segment),
		T(test_reader_jumps_forward_past_a_preallocated_segment),
		T(test_reader_without_the_segment_is_enoent),
		T(test_reader_at_the_end_of_a_recycled_segment_moves_on),
		T(test_disk_sink_cuts_back_to_the_commit_after_a_crash),
		T(test_disk_sink_rotates_files_and_cuts_back_across_them),
		T(test_disk_sink_keeps_keep_files_per_topic),
		T(test_disk_sink_takes_over_unrotated_files_of_an_earlier_version),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
