/* test_wal — the WAL append side (flusherd/wal.h) and segment files
 * (common/seg.h: names, listing, header, record checks).
 *
 * Short writes, write errors and fdatasync failures cannot be had from a
 * real file on demand, so this binary defines its own pwritev() and
 * fdatasync(): the executable's definitions win over libc's for wal.o.
 * By default they behave as the real calls; a test sets `io` to make
 * pwritev write at most N bytes per call, return EINTR once, fail with an
 * errno from some call on, or return 0, and fdatasync fail with EIO.
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
#include "flusherd/wal.h"

#define LOG_ID 0x0123456789abcdefull
#define SEG_MAX (1u << 20)

static struct {
	size_t max_per_call;   /* pwritev writes at most this much (0: all) */
	int eintr_once;        /* next pwritev fails with EINTR */
	int fail_from;         /* the n-th pwritev call (1-based) and later fail ... */
	int fail_errno;        /* ... with this errno */
	int return_zero;       /* pwritev returns 0 */
	int sync_fail;         /* fdatasync fails with EIO */
	int calls;             /* pwritev calls */
	int syncs;             /* fdatasync calls */
} io;

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	io.calls++;
	if (io.eintr_once) {
		io.eintr_once = 0;
		errno = EINTR;
		return -1;
	}
	if (io.fail_from && io.calls >= io.fail_from) {
		errno = io.fail_errno;
		return -1;
	}
	if (io.return_zero)
		return 0;
	size_t limit = io.max_per_call ? io.max_per_call : SIZE_MAX, done = 0;
	for (int i = 0; i < iovcnt && done < limit; i++) {
		size_t n = iov[i].iov_len < limit - done ? iov[i].iov_len : limit - done;
		if (n == 0)
			continue;
		ssize_t w = pwrite(fd, iov[i].iov_base, n, off + (off_t)done);
		if (w < 0)
			return done ? (ssize_t)done : -1;
		done += (size_t)w;
		if ((size_t)w < n)
			break;
	}
	return (ssize_t)done;
}

int fdatasync(int fd)
{
	io.syncs++;
	if (io.sync_fail) {
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

struct fix {
	char dir[64];
	struct wal w;
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-wal-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->w.fd = f->w.dirfd = -1;
	memset(&io, 0, sizeof(io));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	memset(&io, 0, sizeof(io));
	wal_close(&f->w);
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

static int hdr_parse(const uint8_t *b, size_t len, uint64_t *first, uint64_t *lid)
{
	struct seg_hdr h;
	int r = seg_hdr_parse(b, len, &h);
	if (r == 0) {
		*first = h.first_lsn;
		*lid = h.log_id;
	}
	return r;
}

static void seg_path(const struct fix *f, uint64_t first, char *buf, size_t len)
{
	char name[SEG_NAME_LEN];
	seg_name(first, name);
	snprintf(buf, len, "%s/%s", f->dir, name);
}

/* The whole file; *len its size.  Free the result. */
static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static uint8_t *slurp_seg(const struct fix *f, uint64_t first, size_t *len)
{
	char path[128];
	seg_path(f, first, path, sizeof(path));
	return slurp(path, len);
}

static void put_file(const char *path, const void *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, len), (ssize_t)len);
	close(fd);
}

/* A DATA record for device "dev-<seq%10>" with a payload pattern. */
static uint32_t mkrec(uint8_t *dst, uint64_t seq, uint32_t plen)
{
	uint8_t pl[2048];
	char id[8];
	assert_true(plen <= sizeof(pl));
	snprintf(id, sizeof(id), "dev-%u", (unsigned)(seq % 10));
	for (uint32_t i = 0; i < plen; i++)
		pl[i] = (uint8_t)(seq * 31 + i);
	rec_build_data(dst, (const uint8_t *)id, (uint8_t)strlen(id), 1, 0, seq, seq * 1000, seq * 1001, pl,
		       plen, mi_crc32(pl, plen));
	return rec_size((uint32_t)strlen(id), plen);
}

static void open_new(struct fix *f)
{
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SEG_MAX, 0, 0, 1), 0);
}

static void append1(struct fix *f, const void *p, size_t len)
{
	struct iovec v = { (void *)p, len };
	assert_int_equal(wal_append(&f->w, &v, 1, len, f->w.link), 0);
}

static void test_open_creates_first_segment_with_valid_header(void **state)
{
	struct fix *f = *state;
	size_t len;
	uint64_t first, lid;
	open_new(f);
	assert_true(f->w.fd >= 0);
	assert_int_equal(f->w.lsn, 0);
	assert_int_equal(f->w.synced_lsn, 0);
	assert_int_equal(f->w.seg_first, 0);
	assert_int_equal(wal_room(&f->w), SEG_MAX);
	assert_non_null(strstr(f->w.seg_path, "/00000000000000000000.seg"));
	uint8_t *b = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN);
	assert_int_equal(hdr_parse(b, len, &first, &lid), 0);
	assert_int_equal(first, 0);
	assert_int_equal(lid, LOG_ID);
	free(b);
	wal_close(&f->w);
	assert_int_equal(f->w.fd, -1);
	wal_close(&f->w);                      /* twice is harmless */
	/* a new log may start at any LSN (after a dead rotation) */
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SEG_MAX, 4096, 4096, 1), 0);
	assert_non_null(strstr(f->w.seg_path, "/00000000000000004096.seg"));
	assert_int_equal(wal_room(&f->w), SEG_MAX);
	b = slurp_seg(f, 4096, &len);
	assert_int_equal(hdr_parse(b, len, &first, &lid), 0);
	assert_int_equal(first, 4096);
	free(b);
}

static void test_open_refuses_missing_segment_or_data_leftover(void **state)
{
	struct fix *f = *state;
	char path[128], missing[128];
	uint8_t junk[200];
	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	assert_int_equal(wal_open(&f->w, missing, LOG_ID, SEG_MAX, 0, 0, 1), -ENOENT);
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SEG_MAX, 0, 0, 0), -ENOENT);
	assert_int_equal(f->w.dirfd, -1);      /* nothing left open */
	memset(junk, 0xab, sizeof(junk));
	seg_path(f, 0, path, sizeof(path));
	put_file(path, junk, sizeof(junk));
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SEG_MAX, 0, 0, 1), -EEXIST);
	assert_int_equal(f->w.dirfd, -1);
	size_t len;
	uint8_t *b = slurp(path, &len);
	assert_int_equal(len, sizeof(junk));   /* left untouched */
	free(b);
}

/* An empty or header-sized leftover of a rotation that died midway is
 * taken over and given a fresh header. */
static void test_open_takes_over_an_empty_leftover(void **state)
{
	struct fix *f = *state;
	char path[128];
	uint8_t junk[SEG_HDR_LEN];
	uint64_t first, lid;
	size_t len;
	static const size_t sizes[] = { 0, 10, SEG_HDR_LEN };
	memset(junk, 0xee, sizeof(junk));
	seg_path(f, 512, path, sizeof(path));
	for (size_t i = 0; i < 3; i++) {
		put_file(path, junk, sizes[i]);
		assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SEG_MAX, 512, 512, 1), 0);
		uint8_t *b = slurp(path, &len);
		assert_int_equal(len, SEG_HDR_LEN);
		assert_int_equal(hdr_parse(b, len, &first, &lid), 0);
		assert_int_equal(first, 512);
		free(b);
		wal_close(&f->w);
	}
}

static void test_multi_iovec_append_writes_bytes_in_order(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], b[512], c[2048], want[4096];
	uint32_t la = mkrec(a, 1, 0), lb = mkrec(b, 2, 100), lc = mkrec(c, 3, 1500);
	open_new(f);
	struct iovec v[5] = {
		{ a, la }, { b, 0 }, { b, 40 }, { b + 40, lb - 40 }, { c, lc },
	};
	assert_int_equal(wal_append(&f->w, v, 5, la + lb + lc, f->w.link), 0);
	assert_int_equal(f->w.lsn, la + lb + lc);
	assert_int_equal(f->w.synced_lsn, 0);
	size_t n = 0;
	memcpy(want + n, a, la), n += la;
	memcpy(want + n, b, lb), n += lb;
	memcpy(want + n, c, lc), n += lc;
	size_t len;
	uint8_t *file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + n);
	assert_memory_equal(file + SEG_HDR_LEN, want, n);
	/* the record at LSN L sits at offset 64 + L */
	const uint64_t lsns[3] = { 0, la, la + lb };
	for (int i = 0; i < 3; i++) {
		const uint8_t *p = file + SEG_HDR_LEN + lsns[i];
		assert_int_equal(seg_rec_check(p, len - SEG_HDR_LEN - lsns[i], 4096), SEG_REC_OK);
		assert_int_equal(((const struct rec_hdr *)(const void *)p)->seq, i + 1);
	}
	free(file);
	/* the next batch follows */
	append1(f, a, la);
	assert_int_equal(f->w.lsn, n + la);
	file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + n + la);
	assert_memory_equal(file + SEG_HDR_LEN + n, a, la);
	free(file);
}

/* A short pwritev is resumed mid-iovec until every byte is written. */
static void test_short_writes_are_resumed(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], b[512], c[512], want[1536];
	uint32_t la = mkrec(a, 4, 13), lb = mkrec(b, 5, 200), lc = mkrec(c, 6, 1);
	memcpy(want, a, la);
	memcpy(want + la, b, lb);
	memcpy(want + la + lb, c, lc);
	open_new(f);
	static const size_t steps[] = { 7, 1, 48, 333 };
	uint64_t lsn = 0;
	for (size_t s = 0; s < 4; s++) {
		struct iovec v[3] = { { a, la }, { b, lb }, { c, lc } };
		io.max_per_call = steps[s];
		io.calls = 0;
		assert_int_equal(wal_append(&f->w, v, 3, la + lb + lc, f->w.link), 0);
		assert_int_equal(io.calls, (la + lb + lc + steps[s] - 1) / steps[s]);
		lsn += la + lb + lc;
		assert_int_equal(f->w.lsn, lsn);
	}
	size_t len;
	uint8_t *file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + lsn);
	for (size_t s = 0; s < 4; s++)
		assert_memory_equal(file + SEG_HDR_LEN + s * (la + lb + lc), want, la + lb + lc);
	free(file);
}

static void test_eintr_is_retried(void **state)
{
	struct fix *f = *state;
	uint8_t a[512];
	uint32_t la = mkrec(a, 7, 77);
	open_new(f);
	io.eintr_once = 1;
	append1(f, a, la);
	assert_int_equal(io.calls, 2);
	assert_int_equal(f->w.lsn, la);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* A write failing after part of the batch went out zeroes what it wrote:
 * no partial record stays (the log ends at the first zero header), and the
 * same batch can be retried at the same LSN. */
static void test_failed_append_leaves_no_partial_record(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], b[2048];
	uint32_t la = mkrec(a, 1, 50), lb = mkrec(b, 2, 1200);
	size_t len;
	open_new(f);
	append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	struct iovec v = { b, lb };
	io.max_per_call = 100;
	io.calls = 0;
	io.fail_from = 4;                       /* 300 bytes written, then ENOSPC */
	io.fail_errno = ENOSPC;
	assert_int_equal(wal_append(&f->w, &v, 1, lb, f->w.link), -ENOSPC);
	assert_int_equal(f->w.lsn, la);
	uint8_t *file = slurp_seg(f, 0, &len);
	assert_true(len >= SEG_HDR_LEN + la);
	assert_memory_equal(file + SEG_HDR_LEN, a, la);
	assert_true(all_zero(file + SEG_HDR_LEN + la, len - SEG_HDR_LEN - la));
	assert_int_equal(seg_rec_check(file + SEG_HDR_LEN + la, len - SEG_HDR_LEN - la, 4096), SEG_REC_END);
	free(file);
	/* a pwritev that makes no progress is an error too */
	io.fail_from = 0;
	io.return_zero = 1;
	assert_int_equal(wal_append(&f->w, &v, 1, lb, f->w.link), -EIO);
	assert_int_equal(f->w.lsn, la);
	io.return_zero = 0;
	io.max_per_call = 0;
	assert_int_equal(wal_append(&f->w, &v, 1, lb, f->w.link), 0);
	file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + la + lb);
	assert_memory_equal(file + SEG_HDR_LEN, a, la);
	assert_memory_equal(file + SEG_HDR_LEN + la, b, lb);
	free(file);
}

static void test_more_than_64_iovecs_is_einval(void **state)
{
	struct fix *f = *state;
	uint8_t a[64];
	struct iovec v[65];
	uint32_t la = mkrec(a, 1, 0);
	for (int i = 0; i < 65; i++)
		v[i] = (struct iovec){ a, la };
	open_new(f);
	io.calls = 0;
	assert_int_equal(wal_append(&f->w, v, 65, 65ull * la, f->w.link), -EINVAL);
	assert_int_equal(io.calls, 0);
	assert_int_equal(f->w.lsn, 0);
	assert_int_equal(wal_append(&f->w, v, 64, 64ull * la, f->w.link), 0);
	assert_int_equal(f->w.lsn, 64ull * la);
}

static void test_sync_makes_appended_bytes_durable(void **state)
{
	struct fix *f = *state;
	uint8_t a[512];
	uint32_t la = mkrec(a, 1, 9);
	open_new(f);
	io.syncs = 0;
	assert_int_equal(wal_sync(&f->w), 0);   /* nothing to sync: no syscall */
	assert_int_equal(io.syncs, 0);
	append1(f, a, la);
	append1(f, a, la);
	assert_int_equal(f->w.synced_lsn, 0);
	assert_int_equal(wal_sync(&f->w), 0);
	assert_int_equal(io.syncs, 1);
	assert_int_equal(f->w.synced_lsn, 2 * la);
	assert_int_equal(f->w.lsn, 2 * la);
}

/* After a failed fdatasync the page cache cannot be trusted: the unsynced
 * tail is zeroed and lsn goes back, so the caller writes it again. */
static void test_failed_sync_forgets_the_unsynced_tail(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], b[512];
	uint32_t la = mkrec(a, 1, 30), lb = mkrec(b, 2, 300);
	size_t len;
	open_new(f);
	append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	append1(f, b, lb);
	io.sync_fail = 1;
	assert_int_equal(wal_sync(&f->w), -EIO);
	assert_int_equal(f->w.lsn, la);
	assert_int_equal(f->w.synced_lsn, la);
	uint8_t *file = slurp_seg(f, 0, &len);
	assert_memory_equal(file + SEG_HDR_LEN, a, la);
	assert_true(all_zero(file + SEG_HDR_LEN + la, len - SEG_HDR_LEN - la));
	free(file);
	io.sync_fail = 0;
	append1(f, b, lb);
	assert_int_equal(wal_sync(&f->w), 0);
	file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + la + lb);
	assert_memory_equal(file + SEG_HDR_LEN + la, b, lb);
	free(file);
}

static void test_rotate_starts_a_segment_named_by_lsn(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], b[512];
	uint32_t la = mkrec(a, 1, 100), lb = mkrec(b, 2, 20);
	uint64_t first, lid;
	size_t len;
	open_new(f);
	append1(f, a, la);
	int fd = f->w.fd;
	assert_int_equal(wal_rotate(&f->w), -EINVAL);     /* unsynced data */
	assert_int_equal(f->w.fd, fd);
	assert_int_equal(f->w.seg_first, 0);
	assert_int_equal(wal_sync(&f->w), 0);
	assert_int_equal(wal_rotate(&f->w), 0);
	assert_int_equal(f->w.seg_first, la);
	assert_int_equal(f->w.lsn, la);
	assert_int_equal(wal_room(&f->w), SEG_MAX);
	char name[SEG_NAME_LEN];
	seg_name(la, name);
	assert_non_null(strstr(f->w.seg_path, name));
	uint8_t *file = slurp_seg(f, la, &len);
	assert_int_equal(len, SEG_HDR_LEN);
	assert_int_equal(hdr_parse(file, len, &first, &lid), 0);
	assert_int_equal(first, la);
	assert_int_equal(lid, LOG_ID);
	free(file);
	append1(f, b, lb);
	assert_int_equal(wal_sync(&f->w), 0);
	file = slurp_seg(f, la, &len);
	assert_int_equal(len, SEG_HDR_LEN + lb);
	assert_memory_equal(file + SEG_HDR_LEN, b, lb);
	free(file);
	file = slurp_seg(f, 0, &len);                      /* the old one is complete */
	assert_int_equal(len, SEG_HDR_LEN + la);
	free(file);
	struct seg_ent *v;
	size_t n;
	assert_int_equal(seg_list(f->dir, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].first_lsn, 0);
	assert_int_equal(v[1].first_lsn, la);
	assert_string_equal(v[1].name, name);
	free(v);
}

/* A rotation that cannot create its segment leaves the WAL appending to
 * the old one. */
static void test_failed_rotate_keeps_the_current_segment(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], junk[100];
	uint32_t la = mkrec(a, 1, 100);
	char path[128];
	size_t len;
	open_new(f);
	append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	memset(junk, 1, sizeof(junk));
	seg_path(f, la, path, sizeof(path));
	put_file(path, junk, sizeof(junk));                 /* someone else's data */
	char before[sizeof(f->w.seg_path)];
	memcpy(before, f->w.seg_path, sizeof(before));
	assert_int_equal(wal_rotate(&f->w), -EEXIST);
	assert_int_equal(f->w.seg_first, 0);
	assert_string_equal(f->w.seg_path, before);
	append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	uint8_t *file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + 2 * la);
	free(file);
	file = slurp(path, &len);
	assert_int_equal(len, sizeof(junk));
	free(file);
}

#define SMALL_SEG (64u << 10)

/* With a spare ready, a new segment is the preallocated, zero-filled spare
 * renamed into place; appends then overwrite its blocks. */
static void test_rotate_takes_the_preallocated_spare(void **state)
{
	struct fix *f = *state;
	uint8_t a[512];
	uint32_t la = mkrec(a, 1, 100);
	char spare[128];
	struct stat st;
	size_t len;
	uint64_t first, lid;
	snprintf(spare, sizeof(spare), "%s/spare", f->dir);
	assert_int_equal(wal_make_spare(f->dir, SMALL_SEG), 0);
	assert_int_equal(stat(spare, &st), 0);
	assert_int_equal(st.st_size, SEG_HDR_LEN + SMALL_SEG);
	ino_t ino = st.st_ino;
	assert_int_equal(wal_make_spare(f->dir, SMALL_SEG), 0);   /* ready: kept */
	assert_int_equal(stat(spare, &st), 0);
	assert_int_equal(st.st_ino, ino);
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SMALL_SEG, 0, 0, 1), 0);
	assert_int_equal(f->w.spare_used, 1);
	assert_int_equal(access(spare, F_OK), -1);
	append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	uint8_t *file = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + SMALL_SEG);              /* did not grow */
	assert_int_equal(hdr_parse(file, len, &first, &lid), 0);
	assert_int_equal(first, 0);
	assert_int_equal(lid, LOG_ID);
	assert_memory_equal(file + SEG_HDR_LEN, a, la);
	assert_true(all_zero(file + SEG_HDR_LEN + la, len - SEG_HDR_LEN - la));
	free(file);
	/* no spare: the next segment is a plain growing file */
	assert_int_equal(wal_rotate(&f->w), 0);
	assert_int_equal(f->w.spare_used, 0);
	file = slurp_seg(f, la, &len);
	assert_int_equal(len, SEG_HDR_LEN);
	free(file);
}

/* A spare made for another segment size is replaced, never taken. */
static void test_spare_of_another_size_is_not_used(void **state)
{
	struct fix *f = *state;
	char spare[128];
	struct stat st;
	snprintf(spare, sizeof(spare), "%s/spare", f->dir);
	assert_int_equal(wal_make_spare(f->dir, 2 * SMALL_SEG), 0);
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SMALL_SEG, 0, 0, 1), 0);
	assert_int_equal(f->w.spare_used, 0);
	assert_int_equal(access(spare, F_OK), -1);                 /* dropped */
	wal_close(&f->w);
	assert_int_equal(wal_make_spare(f->dir, 2 * SMALL_SEG), 0);
	assert_int_equal(wal_make_spare(f->dir, SMALL_SEG), 0);
	assert_int_equal(stat(spare, &st), 0);
	assert_int_equal(st.st_size, SEG_HDR_LEN + SMALL_SEG);
}

/* Made a piece at a time, the spare only appears, whole, at the end. */
static void test_spare_made_in_steps_appears_whole(void **state)
{
	struct fix *f = *state;
	char spare[128], tmp[128];
	struct stat st;
	struct wal_spare sp = { .fd = -1 };
	snprintf(spare, sizeof(spare), "%s/spare", f->dir);
	snprintf(tmp, sizeof(tmp), "%s/spare.tmp", f->dir);
	int steps = 0, r;
	while ((r = wal_spare_step(&sp, f->dir, SMALL_SEG, 16 << 10)) == 0) {
		steps++;
		assert_int_equal(access(spare, F_OK), -1);
		assert_int_equal(stat(tmp, &st), 0);
		assert_true(st.st_size <= (off_t)steps * (16 << 10));   /* the budget held */
	}
	assert_int_equal(r, 1);
	assert_true(steps >= (int)(SMALL_SEG / (16 << 10)));
	assert_int_equal(sp.fd, -1);
	assert_int_equal(access(tmp, F_OK), -1);
	size_t len;
	uint8_t *file = slurp(spare, &len);
	assert_int_equal(len, SEG_HDR_LEN + SMALL_SEG);
	assert_true(all_zero(file, len));
	free(file);
	assert_int_equal(wal_spare_step(&sp, f->dir, SMALL_SEG, 1), 1);   /* ready: nothing to do */
	assert_int_equal(sp.fd, -1);
}

/* A retired segment of a whole segment's size joins the pool of files
 * for later rotations (wal/recycled.<i>), up to WAL_RECYCLED_MAX; a spare
 * being written is given up for it; a rotation takes a recycled file
 * before the spare, flags it, and each append is followed by 40 zero
 * bytes while the older segment's bytes after them stay as they were
 * (nothing else of the file is written). */
static void test_recycle_and_take_a_retired_segment(void **state)
{
	struct fix *f = *state;
	uint8_t a[512], b[512];
	uint32_t la = mkrec(a, 1, 300), lb = mkrec(b, 2, 20);
	char name0[SEG_NAME_LEN], spare[128], tmp[128], pool0[128], rtmp[128];
	size_t len;
	struct seg_hdr sh;
	snprintf(spare, sizeof(spare), "%s/spare", f->dir);
	snprintf(tmp, sizeof(tmp), "%s/spare.tmp", f->dir);
	snprintf(pool0, sizeof(pool0), "%s/recycled.0", f->dir);
	snprintf(rtmp, sizeof(rtmp), "%s/recycled.tmp", f->dir);
	seg_name(0, name0);
	/* segment 0 from a spare (a whole segment), full of copies of a */
	assert_int_equal(wal_make_spare(f->dir, SMALL_SEG), 0);
	assert_int_equal(wal_open(&f->w, f->dir, LOG_ID, SMALL_SEG, 0, 0, 1), 0);
	for (int i = 0; i < 10; i++)
		append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	assert_int_equal(wal_rotate(&f->w), 0);    /* no spare: a growing segment */
	uint64_t s1 = f->w.seg_first;
	char name1[SEG_NAME_LEN];
	seg_name(s1, name1);
	append1(f, a, la);
	assert_int_equal(wal_sync(&f->w), 0);
	uint8_t *old = slurp_seg(f, 0, &len);
	assert_int_equal(len, SEG_HDR_LEN + SMALL_SEG);
	/* not a whole segment: kept for the caller to unlink */
	assert_int_equal(wal_recycle(f->dir, name1, SMALL_SEG, NULL), -EINVAL);
	/* a spare half made is given up */
	struct wal_spare sp = { .fd = -1 };
	assert_int_equal(wal_spare_step(&sp, f->dir, SMALL_SEG, 4096), 0);
	assert_true(sp.fd >= 0);
	assert_int_equal(wal_recycle(f->dir, name0, SMALL_SEG, &sp), 0);
	assert_int_equal(sp.fd, -1);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(access(rtmp, F_OK), -1);
	assert_int_equal(access(pool0, F_OK), 0);
	seg_path(f, 0, tmp, sizeof(tmp));
	assert_int_equal(access(tmp, F_OK), -1);   /* out of the log */
	assert_int_equal(wal_spare_step(&sp, f->dir, SMALL_SEG, 4096), 1);   /* counts as ready */
	/* with a spare there too (none is made while the pool has one, but
	 * one made before stays), the rotation takes the recycled file */
	uint8_t *zs = calloc(1, SEG_HDR_LEN + SMALL_SEG);
	put_file(spare, zs, SEG_HDR_LEN + SMALL_SEG);
	free(zs);
	assert_int_equal(wal_rotate(&f->w), 0);
	assert_true(f->w.recycled);
	assert_true(f->w.spare_used);
	assert_int_equal(access(pool0, F_OK), -1);
	assert_int_equal(access(spare, F_OK), 0);
	uint64_t s2 = f->w.seg_first;
	append1(f, b, lb);
	assert_int_equal(wal_sync(&f->w), 0);
	uint8_t *file = slurp_seg(f, s2, &len);
	assert_int_equal(len, SEG_HDR_LEN + SMALL_SEG);
	assert_int_equal(seg_hdr_parse(file, len, &sh), 0);
	assert_int_equal(sh.first_lsn, s2);
	assert_int_equal(sh.flags, SEG_F_RECYCLED);
	assert_int_equal(f->w.link, sh.crc);
	assert_memory_equal(file + SEG_HDR_LEN, b, lb);
	assert_true(all_zero(file + SEG_HDR_LEN + lb, REC_HDR_LEN));
	size_t from = SEG_HDR_LEN + lb + REC_HDR_LEN;
	assert_memory_equal(file + from, old + from, len - from);
	free(file);
	free(old);
	/* at most WAL_RECYCLED_MAX files are ready, the spare (still there)
	 * counted: they take retain_bytes of the disk too */
	uint8_t *z = calloc(1, SEG_HDR_LEN + SMALL_SEG);
	for (int i = 0; i < WAL_RECYCLED_MAX; i++) {
		char p[128], n[32];
		snprintf(n, sizeof(n), "x%d", i);
		snprintf(p, sizeof(p), "%s/%s", f->dir, n);
		put_file(p, z, SEG_HDR_LEN + SMALL_SEG);
		assert_int_equal(wal_recycle(f->dir, n, SMALL_SEG, NULL), i < WAL_RECYCLED_MAX - 1 ? 0 : -EEXIST);
		assert_int_equal(access(p, F_OK), i < WAL_RECYCLED_MAX - 1 ? -1 : 0);
	}
	assert_int_equal(wal_ready_bytes(f->dir), WAL_RECYCLED_MAX * (SEG_HDR_LEN + SMALL_SEG));
	/* without the spare, one more */
	assert_int_equal(unlink(spare), 0);
	char last[32];
	snprintf(last, sizeof(last), "x%d", WAL_RECYCLED_MAX - 1);
	assert_int_equal(wal_recycle(f->dir, last, SMALL_SEG, NULL), 0);
	assert_int_equal(wal_ready_bytes(f->dir), WAL_RECYCLED_MAX * (SEG_HDR_LEN + SMALL_SEG));
	free(z);
}

/* A recycle cut short between its two renames leaves recycled.tmp: the
 * next spare step puts it in the pool, or drops it when the pool is full. */
static void test_recycle_cut_short_is_finished(void **state)
{
	struct fix *f = *state;
	char rtmp[128], p[128];
	struct wal_spare sp = { .fd = -1 };
	snprintf(rtmp, sizeof(rtmp), "%s/recycled.tmp", f->dir);
	uint8_t *z = calloc(1, SEG_HDR_LEN + SMALL_SEG);
	for (int i = 0; i < WAL_RECYCLED_MAX; i++) {
		put_file(rtmp, z, SEG_HDR_LEN + SMALL_SEG);
		assert_int_equal(wal_spare_step(&sp, f->dir, SMALL_SEG, 4096), 1);
		assert_int_equal(access(rtmp, F_OK), -1);
		snprintf(p, sizeof(p), "%s/recycled.%d", f->dir, i);
		assert_int_equal(access(p, F_OK), 0);
	}
	put_file(rtmp, z, 100);
	assert_int_equal(wal_spare_step(&sp, f->dir, SMALL_SEG, 4096), 1);
	assert_int_equal(access(rtmp, F_OK), -1);
	free(z);
}

static void test_zero_range_and_dirty_end(void **state)
{
	struct fix *f = *state;
	char path[128];
	static uint8_t buf[200000];
	uint64_t end = 1;
	snprintf(path, sizeof(path), "%s/scratch", f->dir);
	memset(buf, 0, sizeof(buf));
	buf[5] = 1;
	buf[70000] = 2;                          /* past the first 64 KiB block */
	put_file(path, buf, sizeof(buf));
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(wal_dirty_end(fd, 0, sizeof(buf), &end), 0);
	assert_int_equal(end, 70001);
	assert_int_equal(wal_dirty_end(fd, 70001, sizeof(buf), &end), 0);
	assert_int_equal(end, 70001);            /* all zeros: from */
	assert_int_equal(wal_zero_range(fd, 6, 70001), 0);
	assert_int_equal(wal_dirty_end(fd, 0, sizeof(buf), &end), 0);
	assert_int_equal(end, 6);
	assert_int_equal(wal_zero_range(fd, 0, 6), 0);
	assert_int_equal(wal_dirty_end(fd, 0, sizeof(buf), &end), 0);
	assert_int_equal(end, 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, sizeof(buf));   /* zeroed, not cut */
	close(fd);
}

static void test_seg_list_sorts_by_lsn_and_ignores_other_files(void **state)
{
	struct fix *f = *state;
	static const uint64_t lsns[] = { 300, 5, 1000000000000ull, 0, 18446744073709551615ull };
	static const char *const junk[] = { "abc.seg", "00000000000000000001.seg.tmp", "0000000000000000001.seg",
					    "0000000000000000000x.seg", "00000000000000000002.SEG", "LOCK" };
	char path[160], name[SEG_NAME_LEN];
	struct seg_ent *v;
	size_t n = 99;
	assert_int_equal(seg_list(f->dir, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
	for (size_t i = 0; i < 5; i++) {
		seg_path(f, lsns[i], path, sizeof(path));
		put_file(path, "", 0);
	}
	for (size_t i = 0; i < 6; i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, junk[i]);
		put_file(path, "", 0);
	}
	assert_int_equal(seg_list(f->dir, &v, &n), 0);
	assert_int_equal(n, 5);
	static const uint64_t sorted[] = { 0, 5, 300, 1000000000000ull, 18446744073709551615ull };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(v[i].first_lsn, sorted[i]);
		seg_name(sorted[i], name);
		assert_string_equal(v[i].name, name);
	}
	free(v);
	seg_name(42, name);
	assert_string_equal(name, "00000000000000000042.seg");
	snprintf(path, sizeof(path), "%s/missing", f->dir);
	assert_int_equal(seg_list(path, &v, &n), -ENOENT);
}

static void test_seg_hdr_parse_rejects_any_damage(void **state)
{
	(void)state;
	uint8_t h[SEG_HDR_LEN];
	struct seg_hdr sh;
	seg_hdr_build(h, 777, LOG_ID, 123, SEG_F_RECYCLED);
	assert_memory_equal(h, "MIWALSEG", 8);
	assert_int_equal(mi_get32(h + 8), SEG_VERSION);
	assert_int_equal(SEG_VERSION, 2);
	assert_int_equal(mi_get32(h + 12), SEG_HDR_LEN);
	assert_int_equal(mi_get64(h + 32), 123);
	assert_int_equal(mi_get32(h + 40), SEG_F_RECYCLED);
	assert_int_equal(seg_hdr_parse(h, SEG_HDR_LEN, &sh), 0);
	assert_int_equal(sh.first_lsn, 777);
	assert_int_equal(sh.log_id, LOG_ID);
	assert_int_equal(sh.created_ns, 123);
	assert_int_equal(sh.version, 2);
	assert_int_equal(sh.flags, SEG_F_RECYCLED);
	assert_int_equal(sh.crc, mi_get32(h + 60));
	assert_int_equal(seg_hdr_parse(h, SEG_HDR_LEN - 1, &sh), -EBADMSG);
	for (int i = 0; i < SEG_HDR_LEN; i++) {
		h[i] ^= 0x10;
		sh.first_lsn = 5;
		assert_int_equal(seg_hdr_parse(h, SEG_HDR_LEN, &sh), -EBADMSG);
		assert_int_equal(sh.first_lsn, 5);          /* out-params untouched */
		h[i] ^= 0x10;
	}
}

/* Version 1 (older builds) still reads, without flags; a version this
 * build does not know does not. */
static void test_seg_hdr_versions(void **state)
{
	(void)state;
	uint8_t h[SEG_HDR_LEN];
	struct seg_hdr sh;
	static const struct { uint32_t version, flags; int ok; } cases[] = {
		{ 1, 0, 1 }, { 1, SEG_F_RECYCLED, 0 }, { 2, 0, 1 }, { 0, 0, 0 }, { 3, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		seg_hdr_build(h, 64, LOG_ID, 1, 0);
		mi_put32(h + 8, cases[i].version);
		mi_put32(h + 40, cases[i].flags);
		mi_put32(h + 60, mi_crc32(h, 60));
		assert_int_equal(seg_hdr_parse(h, SEG_HDR_LEN, &sh), cases[i].ok ? 0 : -EBADMSG);
		if (cases[i].ok)
			assert_int_equal(sh.version, cases[i].version);
	}
}

static void test_seg_rec_check_statuses(void **state)
{
	(void)state;
	static uint8_t buf[4096];
	uint8_t zeros[64];
	memset(zeros, 0, sizeof(zeros));
	uint32_t n = mkrec(buf, 9, 100);
	struct rec_hdr *h = (struct rec_hdr *)(void *)buf;
	assert_int_equal(seg_rec_check(buf, n, 4096), SEG_REC_OK);
	assert_int_equal(seg_rec_check(buf, n + 100, 4096), SEG_REC_OK);
	/* end of data: nothing left, or zeros */
	assert_int_equal(seg_rec_check(buf, 0, 4096), SEG_REC_END);
	assert_int_equal(seg_rec_check(zeros, 10, 4096), SEG_REC_END);
	assert_int_equal(seg_rec_check(zeros, sizeof(zeros), 4096), SEG_REC_END);
	/* torn: header or body cut short */
	assert_int_equal(seg_rec_check(buf, 10, 4096), SEG_REC_TORN);
	assert_int_equal(seg_rec_check(buf, REC_HDR_LEN - 1, 4096), SEG_REC_TORN);
	assert_int_equal(seg_rec_check(buf, REC_HDR_LEN, 4096), SEG_REC_TORN);
	assert_int_equal(seg_rec_check(buf, n - 1, 4096), SEG_REC_TORN);
	/* bad: any byte of a whole record flipped */
	for (uint32_t i = 0; i < REC_HDR_LEN + 5 + 100; i++) {
		buf[i] ^= 0x04;
		enum seg_rec_status st = seg_rec_check(buf, sizeof(buf), 4096);
		if (st != SEG_REC_BAD)
			fail_msg("byte %u flipped: %s", i, seg_rec_status_name(st));
		buf[i] ^= 0x04;
	}
	/* bad headers */
	assert_int_equal(seg_rec_check(buf, n, 99), SEG_REC_BAD);        /* plen over the limit */
	h->type = REC_PAD;
	assert_int_equal(seg_rec_check(buf, n, 4096), SEG_REC_BAD);
	h->type = REC_MARK;                                             /* a MARK has no id */
	assert_int_equal(seg_rec_check(buf, n, 4096), SEG_REC_BAD);
	h->type = REC_DATA;
	h->id_len = 0;
	assert_int_equal(seg_rec_check(buf, n, 4096), SEG_REC_BAD);
	h->id_len = MI_DEVID_MAX + 1;
	assert_int_equal(seg_rec_check(buf, sizeof(buf), 4096), SEG_REC_BAD);
	/* crc, plen and type zero but the rest not: not an end, damage */
	memset(buf, 0, REC_HDR_LEN);
	buf[20] = 1;
	assert_int_equal(seg_rec_check(buf, REC_HDR_LEN, 4096), SEG_REC_BAD);
	/* a MARK is checked the same way */
	uint64_t pos[2] = { 10, 20 };
	rec_build_mark(buf, 1, 2, pos, 5, NULL);
	assert_int_equal(seg_rec_check(buf, rec_size(0, REC_MARK_PLEN(2)), 4096), SEG_REC_OK);
	buf[REC_HDR_LEN + 16] ^= 1;
	assert_int_equal(seg_rec_check(buf, rec_size(0, REC_MARK_PLEN(2)), 4096), SEG_REC_BAD);
	assert_string_equal(seg_rec_status_name(SEG_REC_OK), "ok");
	assert_non_null(strstr(seg_rec_status_name(SEG_REC_TORN), "torn"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_open_creates_first_segment_with_valid_header),
		T(test_open_refuses_missing_segment_or_data_leftover),
		T(test_open_takes_over_an_empty_leftover),
		T(test_multi_iovec_append_writes_bytes_in_order),
		T(test_short_writes_are_resumed),
		T(test_eintr_is_retried),
		T(test_failed_append_leaves_no_partial_record),
		T(test_more_than_64_iovecs_is_einval),
		T(test_sync_makes_appended_bytes_durable),
		T(test_failed_sync_forgets_the_unsynced_tail),
		T(test_rotate_starts_a_segment_named_by_lsn),
		T(test_failed_rotate_keeps_the_current_segment),
		T(test_rotate_takes_the_preallocated_spare),
		T(test_spare_of_another_size_is_not_used),
		T(test_spare_made_in_steps_appears_whole),
		T(test_zero_range_and_dirty_end),
		T(test_seg_list_sorts_by_lsn_and_ignores_other_files),
		T(test_recycle_and_take_a_retired_segment),
		T(test_recycle_cut_short_is_finished),
		T(test_seg_hdr_parse_rejects_any_damage),
		T(test_seg_hdr_versions),
		T(test_seg_rec_check_statuses),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
