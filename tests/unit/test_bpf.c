/* test_bpf — the socket filters and their loader (bpf/loader.h).
 *
 * Real sockets on loopback: a UDP receiver with the filter attached gets
 * crafted datagrams; each is followed by a good "sentinel" datagram, and
 * since loopback keeps order, once the sentinel is read we know whether the
 * crafted one passed.  Every drop must show up under its reason with the
 * datagram's payload bytes, through the API, through the pinned maps (as
 * ingest-stats reads them) and through `bpftool -j map dump pinned`.
 *
 * The eBPF tests need root (bpf() with CAP_BPF); without it they are
 * skipped with a message.  The classic BPF tests run unprivileged.  Each
 * run pins under its own instance, test-bpf-<pid>, removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bpf/loader.h"
#include "common/clock.h"
#include "common/frame.h"

#define MAXF 1024u        /* max_frame of the test instance: small, to test TOO_LARGE */
#define MS 1000000ull

static char instance[64];
static char pin_dir[160];
static struct bpfl *B;

/* ---- frames and sockets ---- */

static size_t data_frame(uint8_t *out, size_t cap, uint64_t seq, uint32_t len)
{
	uint8_t pay[2048];
	for (uint32_t i = 0; i < len; i++)
		pay[i] = (uint8_t)(seq * 31 + i);
	size_t n = mi_frame_build(out, cap, MI_DATA, 0, 0, seq, 0, pay, len);
	assert_int_equal(n, MI_HDR_LEN + len);
	return n;
}

static void rehcrc(uint8_t *f)
{
	mi_put32(f + 32, mi_crc32(f, 32));
}

struct udp_pair {
	int rx, tx;
	struct sockaddr_storage to;
	socklen_t tolen;
};

static void udp_pair_open(struct udp_pair *p, int family)
{
	memset(p, 0, sizeof(*p));
	p->rx = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	p->tx = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(p->rx >= 0 && p->tx >= 0);
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		memcpy(&p->to, &a, sizeof(a));
		p->tolen = sizeof(a);
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		memcpy(&p->to, &a, sizeof(a));
		p->tolen = sizeof(a);
	}
	assert_int_equal(bind(p->rx, (struct sockaddr *)&p->to, p->tolen), 0);
	assert_int_equal(getsockname(p->rx, (struct sockaddr *)&p->to, &p->tolen), 0);
}

static void udp_pair_close(struct udp_pair *p)
{
	close(p->rx);
	close(p->tx);
}

/* Sends buf then a sentinel; returns how many datagrams equal to buf were
 * read before the sentinel (0 or 1, or more if sent repeatedly). */
static int deliver_n(struct udp_pair *p, const uint8_t *buf, size_t len, int times)
{
	static uint8_t sent[64], got[4096];
	static size_t sent_len;
	static uint64_t sentinel_seq = 1ull << 60;
	int arrived = 0;

	sent_len = data_frame(sent, sizeof(sent), ++sentinel_seq, 8);
	sent[4] = MI_F_MAC;   /* passes the keys-mode flags rule too */
	rehcrc(sent);
	for (int i = 0; i < times; i++)
		assert_int_equal(sendto(p->tx, buf, len, 0, (struct sockaddr *)&p->to, p->tolen), (ssize_t)len);
	assert_int_equal(sendto(p->tx, sent, sent_len, 0, (struct sockaddr *)&p->to, p->tolen), (ssize_t)sent_len);
	for (;;) {
		struct pollfd pf = { .fd = p->rx, .events = POLLIN };
		assert_int_equal(poll(&pf, 1, 2000), 1);
		ssize_t n = recv(p->rx, got, sizeof(got), MSG_DONTWAIT);
		assert_true(n >= 0);
		if ((size_t)n == sent_len && !memcmp(got, sent, sent_len))
			return arrived;
		if ((size_t)n == len && !memcmp(got, buf, len))
			arrived++;
		else
			fail_msg("unexpected datagram of %zd bytes", n);
	}
}

static int deliver(struct udp_pair *p, const uint8_t *buf, size_t len)
{
	return deliver_n(p, buf, len, 1);
}

/* ---- the drop table ---- */

static void totals(struct drop_totals t[DROP_REASON_MAX])
{
	struct drop_totals pinned[DROP_REASON_MAX];
	char err[256];

	assert_int_equal(bpfl_read_drops(B, t), 0);
	/* what a separate process (ingest-stats) reads must be the same */
	int r = bpfl_read_pinned(instance, pinned, err, sizeof(err));
	if (r < 0)
		fail_msg("bpfl_read_pinned: %s", err);
	assert_memory_equal(t, pinned, sizeof(pinned));
}

/* Sends buf, expects it dropped and counted once under want with len
 * bytes (UDP header excluded), and nothing else counted. */
static void expect_drop(struct udp_pair *p, const uint8_t *buf, size_t len, enum drop_reason want)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];

	totals(before);
	if (deliver(p, buf, len) != 0)
		fail_msg("datagram for %s passed", bpfl_reason_name(want));
	totals(after);
	for (int r = 0; r < DROP_REASON_MAX; r++) {
		uint64_t dp = after[r].packets - before[r].packets, db = after[r].bytes - before[r].bytes;
		if (r == (int)want) {
			if (dp != 1 || db != len)
				fail_msg("%s: +%llu packets +%llu bytes, want +1 +%zu", bpfl_reason_name(want),
					 (unsigned long long)dp, (unsigned long long)db, len);
		} else if (dp || db) {
			fail_msg("expected %s, also counted %s +%llu", bpfl_reason_name(want),
				 bpfl_reason_name((enum drop_reason)r), (unsigned long long)dp);
		}
	}
}

static void expect_pass(struct udp_pair *p, const uint8_t *buf, size_t len)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];

	totals(before);
	assert_int_equal(deliver(p, buf, len), 1);
	totals(after);
	assert_memory_equal(before, after, sizeof(before));
}

/* ---- set-up, clean-up ---- */

static void remove_pins(const char *inst)
{
	char path[200];
	const char *maps[] = { "drops", "udrops", "bans" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s/%s", BPFL_PIN_ROOT, inst, maps[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/%s", BPFL_PIN_ROOT, inst);
	rmdir(path);
}

static int group_setup(void **state)
{
	char err[512];
	int r = bpfl_open(instance, MAXF, 0, 0, 0, &B, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "bpfl_open: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	bpfl_close(B);
	B = NULL;
	remove_pins(instance);
	char path[200];
	snprintf(path, sizeof(path), "%s-replace", instance);
	remove_pins(path);
	return 0;
}

/* ---- eBPF UDP filter ---- */

static void test_udp_verdicts(void **state)
{
	struct udp_pair p;
	uint8_t f[2048];
	size_t n;

	udp_pair_open(&p, AF_INET);
	char err[256];
	if (bpfl_attach_udp(B, p.rx, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	/* locked: nobody in the process can take it off */
	int zero = 0;
	assert_int_equal(setsockopt(p.rx, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof(zero)), -1);
	assert_int_equal(errno, EPERM);

	n = data_frame(f, sizeof(f), 1, 10);
	expect_pass(&p, f, n);
	n = data_frame(f, sizeof(f), 2, 0);                /* zero-length payload */
	expect_pass(&p, f, n);
	n = data_frame(f, sizeof(f), 3, MAXF);             /* exactly max_frame */
	expect_pass(&p, f, n);

	expect_drop(&p, f, 0, DROP_SHORT);                 /* empty datagram */
	expect_drop(&p, f, 20, DROP_SHORT);
	expect_drop(&p, f, MI_HDR_LEN - 1, DROP_SHORT);

	n = data_frame(f, sizeof(f), 4, 10);
	f[1] = 'J';
	expect_drop(&p, f, n, DROP_BAD_MAGIC);

	n = data_frame(f, sizeof(f), 5, 10);
	f[2] = 2;
	rehcrc(f);
	expect_drop(&p, f, n, DROP_BAD_VERSION);

	n = data_frame(f, sizeof(f), 6, 10);
	f[3] = MI_HELLO;
	rehcrc(f);
	expect_drop(&p, f, n, DROP_BAD_TYPE);
	f[3] = 200;                                        /* beyond the 32-bit mask */
	rehcrc(f);
	expect_drop(&p, f, n, DROP_BAD_TYPE);

	n = data_frame(f, sizeof(f), 7, 10);
	expect_drop(&p, f, n + 1, DROP_BAD_LENGTH);        /* one byte more than len */
	expect_drop(&p, f, n - 1, DROP_BAD_LENGTH);        /* one byte less */
	expect_drop(&p, f, MI_HDR_LEN, DROP_BAD_LENGTH);   /* header only, len 10 */

	n = data_frame(f, sizeof(f), 8, 10);
	f[33] ^= 0x01;
	expect_drop(&p, f, n, DROP_BAD_HCRC);

	n = data_frame(f, sizeof(f), 9, MAXF + 1);
	expect_drop(&p, f, n, DROP_TOO_LARGE);

	/* open mode (flags rule 0, 0): the kernel does not look at flags */
	n = data_frame(f, sizeof(f), 10, 10);
	f[4] = MI_F_MAC | MI_F_SEALED;
	rehcrc(f);
	expect_pass(&p, f, n);
	udp_pair_close(&p);
}

/* A frame of 20 payload bytes with the given flags. */
static size_t flagged_frame(uint8_t *out, size_t cap, uint64_t seq, uint16_t flags)
{
	uint8_t pay[20] = { 4, 'k', 'e', 'y', 's' };
	size_t n = mi_frame_build(out, cap, MI_DATA, flags, 0, seq, 0, pay, sizeof(pay));
	assert_int_equal(n, MI_HDR_LEN + sizeof(pay));
	return n;
}

/* Keys mode: the MAC flag is mandatory and the sealed flag refused, both
 * as DROP_AUTH, in the table the open-mode handle shares. */
static void test_udp_keys_flags(void **state)
{
	struct udp_pair p;
	struct bpfl *k;
	uint8_t f[256];
	char err[512];

	if (bpfl_open(instance, MAXF, 0, MI_F_MAC | MI_F_SEALED, MI_F_MAC, &k, err, sizeof(err)) < 0)
		fail_msg("keys-mode open: %s", err);
	assert_non_null(strstr(bpfl_describe(k), "flags & 0x6 == 0x2"));
	udp_pair_open(&p, AF_INET);
	if (bpfl_attach_udp(k, p.rx, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	expect_pass(&p, f, flagged_frame(f, sizeof(f), 1, MI_F_MAC));
	expect_pass(&p, f, flagged_frame(f, sizeof(f), 2, MI_F_MAC | 1u << 8 | MI_F_FPR));  /* others free */
	expect_drop(&p, f, flagged_frame(f, sizeof(f), 3, 0), DROP_AUTH);
	expect_drop(&p, f, flagged_frame(f, sizeof(f), 4, MI_F_FPR | 1u << 9), DROP_AUTH);
	expect_drop(&p, f, flagged_frame(f, sizeof(f), 5, MI_F_SEALED), DROP_AUTH);
	expect_drop(&p, f, flagged_frame(f, sizeof(f), 6, MI_F_MAC | MI_F_SEALED), DROP_AUTH);
	/* the checks before it still come first */
	size_t n = flagged_frame(f, sizeof(f), 7, 0);
	f[33] ^= 1;
	expect_drop(&p, f, n, DROP_BAD_HCRC);
	udp_pair_close(&p);
	bpfl_close(k);
}

/* The table in crc_table.h against zlib: random good headers all pass,
 * and any single flipped bit in bytes 3..35 is a header CRC drop. */
static void test_udp_crc(void **state)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];
	struct udp_pair p;
	uint8_t f[256];
	char err[256];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	udp_pair_open(&p, AF_INET);
	if (bpfl_attach_udp(B, p.rx, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	totals(before);
	for (int i = 0; i < 300; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint8_t pay[64];
		uint32_t len = (uint32_t)(x % sizeof(pay));
		memset(pay, (int)x, len);
		size_t n = mi_frame_build(f, sizeof(f), MI_DATA, (uint16_t)(x >> 8), (uint16_t)(x >> 24), x,
					  x * 3, pay, len);
		assert_int_equal(deliver(&p, f, n), 1);
	}
	int flips = 0;
	size_t n = data_frame(f, sizeof(f), 77, 16);
	for (int byte = 3; byte < MI_HDR_LEN; byte++)
		for (int bit = 0; bit < 8; bit++) {
			f[byte] ^= (uint8_t)(1u << bit);
			assert_int_equal(deliver(&p, f, n), 0);
			f[byte] ^= (uint8_t)(1u << bit);
			flips++;
		}
	totals(after);
	assert_int_equal(after[DROP_BAD_HCRC].packets - before[DROP_BAD_HCRC].packets, flips);
	assert_int_equal(after[DROP_BAD_HCRC].bytes - before[DROP_BAD_HCRC].bytes, (uint64_t)flips * n);
	udp_pair_close(&p);
}

static void test_udp_ipv6(void **state)
{
	struct udp_pair p;
	uint8_t f[256];
	char err[256];

	udp_pair_open(&p, AF_INET6);
	if (bpfl_attach_udp(B, p.rx, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	size_t n = data_frame(f, sizeof(f), 1, 5);
	expect_pass(&p, f, n);
	f[0] = 0;
	expect_drop(&p, f, n, DROP_BAD_MAGIC);
	udp_pair_close(&p);
}

/* UDP GSO/GRO: without UDP_GRO the kernel splits a UDP_SEGMENT send
 * before the filter, which judges each datagram; with UDP_GRO the socket
 * gets the batch as one skb, which passes whole (user space splits it by
 * gso_size and checks each frame). */
static void test_udp_gso(void **state)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];
	uint8_t buf[10 * 136], got[2048];
	char pay[100], err[256];

	memset(pay, 'g', sizeof(pay));
	for (int i = 0; i < 10; i++)
		assert_int_equal(mi_frame_build(buf + i * 136, 136, MI_DATA, 0, 0, (uint64_t)i + 1, 0, pay, 100), 136);
	buf[3 * 136] = 'X';                                /* frame 3: bad magic */
	for (int gro = 0; gro < 2; gro++) {
		struct udp_pair p;
		int seg = 136, one = 1;
		udp_pair_open(&p, AF_INET);
		if (gro)
			assert_int_equal(setsockopt(p.rx, IPPROTO_UDP, 104 /* UDP_GRO */, &one, sizeof(one)), 0);
		if (bpfl_attach_udp(B, p.rx, err, sizeof(err)) < 0)
			fail_msg("%s", err);
		assert_int_equal(setsockopt(p.tx, IPPROTO_UDP, 103 /* UDP_SEGMENT */, &seg, sizeof(seg)), 0);
		totals(before);
		assert_int_equal(sendto(p.tx, buf, sizeof(buf), 0, (struct sockaddr *)&p.to, p.tolen),
				 (ssize_t)sizeof(buf));
		size_t total = 0;
		int reads = 0;
		struct pollfd pf = { .fd = p.rx, .events = POLLIN };
		while (poll(&pf, 1, 200) == 1) {
			ssize_t n = recv(p.rx, got, sizeof(got), MSG_DONTWAIT);
			if (n < 0)
				break;
			total += (size_t)n;
			reads++;
		}
		totals(after);
		if (!gro) {
			assert_int_equal(reads, 9);
			assert_int_equal(total, 9 * 136);
			assert_int_equal(after[DROP_BAD_MAGIC].packets - before[DROP_BAD_MAGIC].packets, 1);
		} else {
			assert_int_equal(reads, 1);
			assert_int_equal(total, sizeof(buf));
			assert_memory_equal(before, after, sizeof(before));
		}
		udp_pair_close(&p);
	}
}

/* ---- user-space drops ---- */

static void test_user_count(void **state)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];

	totals(before);
	bpfl_count(B, DROP_REPLAY, 100);
	bpfl_count(B, DROP_REPLAY, 50);
	bpfl_count(B, DROP_RING_FULL, 7);
	bpfl_count(B, DROP_REASON_MAX, 1);                 /* out of range: ignored */
	bpfl_count(NULL, DROP_REPLAY, 1);                  /* fallback mode: no-op */
	totals(after);
	assert_int_equal(after[DROP_REPLAY].packets - before[DROP_REPLAY].packets, 2);
	assert_int_equal(after[DROP_REPLAY].bytes - before[DROP_REPLAY].bytes, 150);
	assert_int_equal(after[DROP_RING_FULL].packets - before[DROP_RING_FULL].packets, 1);
	assert_int_equal(after[DROP_RING_FULL].bytes - before[DROP_RING_FULL].bytes, 7);
}

/* `bpftool -j map dump pinned` sees the same numbers (it is what an
 * operator runs): sums drops over CPUs and reads udrops. */
static int64_t bpftool_sum(const char *map, unsigned key, const char *field)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "bpftool -j map dump pinned %s/%s 2>/dev/null", pin_dir, map);
	FILE *fp = popen(cmd, "r");
	if (!fp)
		return -1;
	json_error_t je;
	json_t *root = json_loadf(fp, 0, &je);
	pclose(fp);
	if (!json_is_array(root)) {
		json_decref(root);
		return -1;
	}
	int64_t sum = -1;
	size_t i;
	json_t *e;
	json_array_foreach(root, i, e) {
		/* with BTF bpftool prints "formatted" {key, value|values} */
		json_t *fm = json_object_get(e, "formatted");
		if (!fm || json_integer_value(json_object_get(fm, "key")) != (json_int_t)key)
			continue;
		sum = 0;
		json_t *vals = json_object_get(fm, "values"), *v;
		size_t j;
		if (vals) {
			json_array_foreach(vals, j, v)
				sum += json_integer_value(json_object_get(json_object_get(v, "value"), field));
		} else {
			sum = json_integer_value(json_object_get(json_object_get(fm, "value"), field));
		}
	}
	json_decref(root);
	return sum;
}

static void test_bpftool_dump(void **state)
{
	struct drop_totals t[DROP_REASON_MAX];

	if (access("/usr/sbin/bpftool", X_OK) != 0 && system("command -v bpftool >/dev/null") != 0) {
		fprintf(stderr, "    bpftool not installed: dump not checked\n");
		skip();
	}
	totals(t);
	assert_true(t[DROP_BAD_MAGIC].packets > 0 && t[DROP_REPLAY].packets > 0);
	int64_t kp = bpftool_sum("drops", DROP_BAD_MAGIC, "packets");
	int64_t kb = bpftool_sum("drops", DROP_BAD_MAGIC, "bytes");
	int64_t up = bpftool_sum("udrops", DROP_REPLAY, "packets");
	int64_t ub = bpftool_sum("udrops", DROP_REPLAY, "bytes");
	assert_int_equal(kp, t[DROP_BAD_MAGIC].packets);
	assert_int_equal(kb, t[DROP_BAD_MAGIC].bytes);
	assert_int_equal(up, t[DROP_REPLAY].packets);
	assert_int_equal(ub, t[DROP_REPLAY].bytes);
}

/* ---- TCP listener filter ---- */

static int tcp_listener(int family, const char *addr, struct sockaddr_storage *ret, socklen_t *retlen)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(ret, 0, sizeof(*ret));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ret;
		a->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, addr, &a->sin_addr), 1);
		*retlen = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ret;
		a->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, addr, &a->sin6_addr), 1);
		*retlen = sizeof(*a);
	}
	assert_int_equal(bind(fd, (struct sockaddr *)ret, *retlen), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)ret, retlen), 0);
	assert_int_equal(listen(fd, 64), 0);
	char err[256];
	if (bpfl_attach_tcp_listener(B, fd, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	return fd;
}

/* Non-blocking connect from src (NULL: any) to dst.  Returns the
 * connected fd, or -1 when no connection was established in timeout_ms
 * (a dropped SYN leaves the client retransmitting). */
static int try_connect(int family, const char *src, const struct sockaddr_storage *dst, socklen_t dstlen,
		       int timeout_ms)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (src) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
		assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	}
	int r = connect(fd, (const struct sockaddr *)dst, dstlen);
	assert_true(r == 0 || errno == EINPROGRESS);
	struct pollfd pf = { .fd = fd, .events = POLLOUT };
	if (r != 0 && poll(&pf, 1, timeout_ms) != 1) {
		close(fd);
		return -1;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	assert_int_equal(soerr, 0);
	return fd;
}

/* Accepts one pending connection and checks data flows both ways through
 * the filter the accepted socket inherited. */
static void accept_and_talk(int lfd, int cfd)
{
	struct pollfd pf = { .fd = lfd, .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 1000), 1);
	int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(s >= 0);
	char buf[8];
	assert_int_equal(write(cfd, "ping", 4), 4);
	pf.fd = s;
	assert_int_equal(poll(&pf, 1, 1000), 1);
	assert_int_equal(read(s, buf, sizeof(buf)), 4);
	assert_int_equal(write(s, "pong", 4), 4);
	pf.fd = cfd;
	assert_int_equal(poll(&pf, 1, 1000), 1);
	assert_int_equal(read(cfd, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);
	close(s);
}

static void v4_mapped(const char *v4, struct in6_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->s6_addr[10] = ret->s6_addr[11] = 0xFF;
	assert_int_equal(inet_pton(AF_INET, v4, &ret->s6_addr[12]), 1);
}

static void test_tcp_ban(void **state)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];
	struct sockaddr_storage la;
	socklen_t ll;
	struct in6_addr lo;
	int lfd = tcp_listener(AF_INET, "127.0.0.1", &la, &ll), c;

	v4_mapped("127.0.0.1", &lo);
	c = try_connect(AF_INET, "127.0.0.1", &la, ll, 1000);   /* no ban yet */
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);

	assert_int_equal(bpfl_ban(B, &lo, clock_mono_ns() + 60000 * MS), 0);
	totals(before);
	assert_int_equal(try_connect(AF_INET, "127.0.0.1", &la, ll, 300), -1);
	totals(after);
	assert_true(after[DROP_BANNED].packets - before[DROP_BANNED].packets >= 1);
	assert_true(after[DROP_BANNED].bytes - before[DROP_BANNED].bytes >= 20);   /* a SYN is >= 20 bytes */

	c = try_connect(AF_INET, "127.0.0.2", &la, ll, 1000);   /* another source */
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);

	assert_int_equal(bpfl_unban(B, &lo), 0);
	assert_int_equal(bpfl_unban(B, &lo), -ENOENT);
	c = try_connect(AF_INET, "127.0.0.1", &la, ll, 1000);
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);

	/* expired entries pass, and user space reaps them */
	assert_int_equal(bpfl_ban(B, &lo, clock_mono_ns() - 1), 0);
	c = try_connect(AF_INET, "127.0.0.1", &la, ll, 1000);
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);
	assert_int_equal(bpfl_ban(B, &lo, clock_mono_ns() + 300 * MS), 0);
	assert_int_equal(try_connect(AF_INET, "127.0.0.1", &la, ll, 150), -1);
	usleep(350000);
	c = try_connect(AF_INET, "127.0.0.1", &la, ll, 1000);
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);
	struct in6_addr other;
	v4_mapped("10.1.2.3", &other);
	assert_int_equal(bpfl_ban(B, &other, UINT64_MAX), 0);
	assert_int_equal(bpfl_expire_bans(B, clock_mono_ns()), 1);
	assert_int_equal(bpfl_unban(B, &lo), -ENOENT);
	assert_int_equal(bpfl_unban(B, &other), 0);
	close(lfd);
}

static void test_tcp_ipv6(void **state)
{
	struct sockaddr_storage la;
	socklen_t ll;
	struct in6_addr a = IN6ADDR_LOOPBACK_INIT, m;
	int lfd = tcp_listener(AF_INET6, "::1", &la, &ll), c;

	assert_int_equal(bpfl_ban(B, &a, UINT64_MAX), 0);
	assert_int_equal(try_connect(AF_INET6, NULL, &la, ll, 300), -1);
	assert_int_equal(bpfl_unban(B, &a), 0);
	c = try_connect(AF_INET6, NULL, &la, ll, 1000);
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);
	close(lfd);

	/* a dual-stack listener sees IPv4 clients as IPv4 packets: the
	 * v4-mapped key must still match */
	lfd = tcp_listener(AF_INET6, "::", &la, &ll);
	struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = ((struct sockaddr_in6 *)&la)->sin6_port,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_storage d;
	memcpy(&d, &v4, sizeof(v4));
	v4_mapped("127.0.0.1", &m);
	assert_int_equal(bpfl_ban(B, &m, UINT64_MAX), 0);
	assert_int_equal(try_connect(AF_INET, "127.0.0.1", &d, sizeof(v4), 300), -1);
	c = try_connect(AF_INET, "127.0.0.2", &d, sizeof(v4), 1000);
	assert_true(c >= 0);
	accept_and_talk(lfd, c);
	close(c);
	assert_int_equal(bpfl_unban(B, &m), 0);
	close(lfd);
}

/* ---- restarts ---- */

static void test_reopen_keeps_counters(void **state)
{
	struct drop_totals before[DROP_REASON_MAX], after[DROP_REASON_MAX];
	struct in6_addr x;
	char err[512];

	v4_mapped("192.0.2.1", &x);
	assert_int_equal(bpfl_ban(B, &x, UINT64_MAX), 0);
	totals(before);
	assert_true(before[DROP_BAD_HCRC].packets > 0);
	bpfl_close(B);
	B = NULL;
	if (bpfl_open(instance, MAXF, 0, 0, 0, &B, err, sizeof(err)) < 0)
		fail_msg("reopen: %s", err);
	const char *d = bpfl_describe(B);
	assert_non_null(strstr(d, "drops id"));
	assert_non_null(strstr(d, "reused"));
	assert_null(strstr(d, "created"));
	totals(after);
	assert_memory_equal(before, after, sizeof(before));
	/* the user-space half is the same memory too */
	bpfl_count(B, DROP_MALFORMED, 3);
	totals(after);
	assert_int_equal(after[DROP_MALFORMED].packets, before[DROP_MALFORMED].packets + 1);
	assert_int_equal(bpfl_unban(B, &x), 0);   /* the ban survived */

	/* a second handle at once (another worker process) shares the table */
	struct bpfl *b2;
	if (bpfl_open(instance, MAXF, 0, 0, 0, &b2, err, sizeof(err)) < 0)
		fail_msg("second open: %s", err);
	bpfl_count(b2, DROP_MALFORMED, 3);
	bpfl_close(b2);
	totals(after);
	assert_int_equal(after[DROP_MALFORMED].packets, before[DROP_MALFORMED].packets + 2);
}

/* A pinned map of another layout (an older build) is replaced, and said so. */
static void test_replace_incompatible(void **state)
{
	char inst[80], dir[200], path[240], err[512];
	struct bpfl *b;

	snprintf(inst, sizeof(inst), "%s-replace", instance);
	snprintf(dir, sizeof(dir), "%s/%s", BPFL_PIN_ROOT, inst);
	assert_true(mkdir(dir, 0700) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/drops", dir);
	int fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "drops", 4, 8, 4, NULL);
	assert_true(fd >= 0);
	assert_int_equal(bpf_obj_pin(fd, path), 0);
	close(fd);
	if (bpfl_open(inst, MAXF, 0, 0, 0, &b, err, sizeof(err)) < 0)
		fail_msg("open over an incompatible pin: %s", err);
	assert_non_null(strstr(bpfl_describe(b), "replaced"));
	struct drop_totals t[DROP_REASON_MAX];
	assert_int_equal(bpfl_read_pinned(inst, t, err, sizeof(err)), 0);
	bpfl_close(b);
}

static void test_api_edges(void **state)
{
	struct drop_totals t[DROP_REASON_MAX];
	struct bpfl *b = (struct bpfl *)0x1;
	char err[256];

	assert_int_equal(bpfl_open("../x", MAXF, 0, 0, 0, &b, err, sizeof(err)), -EINVAL);
	assert_true(b == (struct bpfl *)0x1);      /* untouched on failure */
	assert_int_equal(bpfl_open("", MAXF, 0, 0, 0, &b, err, sizeof(err)), -EINVAL);
	assert_int_equal(bpfl_read_pinned("no-such-instance-xyz", t, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no eBPF filter"));
	assert_int_equal(bpfl_attach_udp(NULL, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(bpfl_describe(NULL), "");
	assert_string_equal(bpfl_reason_name(DROP_BAD_HCRC), "bad_hcrc");
	assert_string_equal(bpfl_reason_name(DROP_REASON_MAX), "?");
	for (int r = 0; r < DROP_REASON_MAX; r++)
		assert_string_not_equal(bpfl_reason_name((enum drop_reason)r), "?");
	bpfl_close(NULL);
}

/* ---- degraded modes, in a child process that drops capabilities ---- */

static int drop_caps(uint64_t keep)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		d[i].effective &= (uint32_t)(keep >> (32 * i));
		d[i].permitted &= (uint32_t)(keep >> (32 * i));
		d[i].inheritable = 0;
	}
	return (int)syscall(SYS_capset, &h, d);
}

#define CAPBIT(c) (1ull << (c))

/* Without bpffs and without the right to mount it, the filters still
 * load, unpinned, and the description names the map ids. */
static void test_unpinned_mode(void **state)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[512];
		struct bpfl *b;
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    umount2("/sys/fs/bpf", MNT_DETACH) < 0)
			_exit(77);
		if (drop_caps(CAPBIT(CAP_BPF) | CAPBIT(CAP_PERFMON) | CAPBIT(CAP_NET_ADMIN) |
			      CAPBIT(CAP_DAC_OVERRIDE)) < 0)
			_exit(77);
		if (bpfl_open(instance, MAXF, 0, 0, 0, &b, err, sizeof(err)) < 0) {
			fprintf(stderr, "unpinned open: %s\n", err);
			_exit(1);
		}
		const char *d = bpfl_describe(b);
		int ok = strstr(d, "not pinned") && strstr(d, "drops id") && strstr(d, "bpftool map dump id");
		if (!ok)
			fprintf(stderr, "describe: %s\n", d);
		struct udp_pair p;
		udp_pair_open(&p, AF_INET);
		uint8_t f[64];
		size_t n = data_frame(f, sizeof(f), 1, 4);
		struct drop_totals t[DROP_REASON_MAX];
		ok = ok && bpfl_attach_udp(b, p.rx, err, sizeof(err)) == 0;
		f[0] = 'X';
		ok = ok && deliver(&p, f, n) == 0 && bpfl_read_drops(b, t) == 0 && t[DROP_BAD_MAGIC].packets == 1;
		bpfl_close(b);
		_exit(ok ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77) {
		fprintf(stderr, "    cannot build a namespace without bpffs here: not checked\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Without CAP_BPF bpfl_open fails with a reason, never aborts, and the
 * classic filter still attaches. */
static void test_no_privilege_falls_back(void **state)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[512] = "";
		struct bpfl *b = NULL;
		if (drop_caps(0) < 0)
			_exit(77);
		int r = bpfl_open(instance, MAXF, 0, 0, 0, &b, err, sizeof(err));
		if (r == 0 || b || !err[0]) {
			fprintf(stderr, "open without privileges: r=%d err='%s'\n", r, err);
			_exit(1);
		}
		struct udp_pair p;
		udp_pair_open(&p, AF_INET);
		if (bpfl_attach_udp_classic(p.rx, MAXF, 0, 0, 0, err, sizeof(err)) < 0) {
			fprintf(stderr, "classic: %s\n", err);
			_exit(1);
		}
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- classic BPF fallback (unprivileged) ---- */

static void test_classic(void **state)
{
	struct udp_pair p;
	uint8_t f[2048];
	char err[256];
	uint32_t drops0, drops1;
	size_t n;

	udp_pair_open(&p, AF_INET);
	if (bpfl_attach_udp_classic(p.rx, MAXF, 0, 0, 0, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	int zero = 0;
	assert_int_equal(setsockopt(p.rx, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof(zero)), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(bpfl_socket_drops(p.rx, &drops0), 0);

	n = data_frame(f, sizeof(f), 1, 10);
	assert_int_equal(deliver(&p, f, n), 1);
	n = data_frame(f, sizeof(f), 2, 0);
	assert_int_equal(deliver(&p, f, n), 1);
	n = data_frame(f, sizeof(f), 3, MAXF);
	assert_int_equal(deliver(&p, f, n), 1);
	n = data_frame(f, sizeof(f), 300, 10);             /* every byte of len counts */
	f[10] = 1;
	assert_int_equal(deliver(&p, f, n), 0);
	f[10] = 0;
	f[11] = 1;
	assert_int_equal(deliver(&p, f, n), 0);

	assert_int_equal(deliver(&p, f, 0), 0);
	assert_int_equal(deliver(&p, f, MI_HDR_LEN - 1), 0);
	n = data_frame(f, sizeof(f), 4, 10);
	f[0] = 'X';
	assert_int_equal(deliver(&p, f, n), 0);
	n = data_frame(f, sizeof(f), 5, 10);
	f[2] = 2;
	assert_int_equal(deliver(&p, f, n), 0);
	n = data_frame(f, sizeof(f), 6, 10);
	f[3] = MI_HELLO;
	assert_int_equal(deliver(&p, f, n), 0);
	f[3] = 40;
	assert_int_equal(deliver(&p, f, n), 0);
	n = data_frame(f, sizeof(f), 7, 10);
	assert_int_equal(deliver(&p, f, n + 1), 0);
	assert_int_equal(deliver(&p, f, n - 1), 0);
	n = data_frame(f, sizeof(f), 8, 256);              /* len 0x100: byte 1 of len */
	assert_int_equal(deliver(&p, f, n - 1), 0);
	n = data_frame(f, sizeof(f), 9, MAXF + 1);
	assert_int_equal(deliver(&p, f, n), 0);
	/* no CRC in classic BPF: user space catches this one */
	n = data_frame(f, sizeof(f), 10, 10);
	f[33] ^= 1;
	assert_int_equal(deliver(&p, f, n), 1);

	assert_int_equal(bpfl_socket_drops(p.rx, &drops1), 0);
	assert_int_equal(drops1 - drops0, 12);
	udp_pair_close(&p);

	/* a types mask lets other types through */
	udp_pair_open(&p, AF_INET);
	assert_int_equal(bpfl_attach_udp_classic(p.rx, MAXF, 1u << MI_DATA | 1u << MI_PING, 0, 0, err, sizeof(err)), 0);
	n = data_frame(f, sizeof(f), 11, 10);
	f[3] = MI_PING;
	rehcrc(f);
	assert_int_equal(deliver(&p, f, n), 1);
	f[3] = MI_PONG;
	assert_int_equal(deliver(&p, f, n), 0);
	udp_pair_close(&p);
}

/* The keys-mode flags rule in classic BPF: flags are little-endian and a
 * half-word load big-endian, so bits of either byte must land right. */
static void test_classic_keys_flags(void **state)
{
	struct udp_pair p;
	uint8_t f[256];
	char err[256];
	uint32_t drops0, drops1;

	udp_pair_open(&p, AF_INET);
	if (bpfl_attach_udp_classic(p.rx, MAXF, 0, MI_F_MAC | MI_F_SEALED, MI_F_MAC, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(bpfl_socket_drops(p.rx, &drops0), 0);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 1, MI_F_MAC)), 1);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 2, MI_F_MAC | 1u << 8 | MI_F_FPR)), 1);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 3, 0)), 0);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 4, 1u << 9 | 1u << 10)), 0);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 5, MI_F_SEALED)), 0);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 6, MI_F_MAC | MI_F_SEALED)), 0);
	assert_int_equal(bpfl_socket_drops(p.rx, &drops1), 0);
	assert_int_equal(drops1 - drops0, 4);
	udp_pair_close(&p);

	/* a rule on the high byte (bit 8 clear): the byte order of the
	 * comparison; the sentinel (flags 0x2) passes it */
	udp_pair_open(&p, AF_INET);
	assert_int_equal(bpfl_attach_udp_classic(p.rx, MAXF, 0, 0x0100, 0, err, sizeof(err)), 0);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 7, MI_F_FPR | MI_F_MAC)), 1);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 8, 0x0200)), 1);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 9, 0x0100)), 0);
	assert_int_equal(deliver(&p, f, flagged_frame(f, sizeof(f), 10, 0x0101)), 0);
	udp_pair_close(&p);
}

static int bpf_permitted(char *why, size_t len)
{
	if (geteuid() != 0) {
		snprintf(why, len, "not root");
		return 0;
	}
	/* a map is the cheapest thing bpf() can be asked to make */
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "probe", 4, 4, 1, NULL);
	if (fd < 0) {
		snprintf(why, len, "bpf() refused: %s", strerror(errno));
		return 0;
	}
	close(fd);
	return 1;
}

int main(void)
{
	const struct CMUnitTest classic[] = {
		cmocka_unit_test(test_classic),
		cmocka_unit_test(test_classic_keys_flags),
	};
	const struct CMUnitTest ebpf[] = {
		cmocka_unit_test(test_api_edges),
		cmocka_unit_test(test_udp_verdicts),
		cmocka_unit_test(test_udp_crc),
		cmocka_unit_test(test_udp_ipv6),
		cmocka_unit_test(test_udp_keys_flags),
		cmocka_unit_test(test_udp_gso),
		cmocka_unit_test(test_user_count),
		cmocka_unit_test(test_bpftool_dump),
		cmocka_unit_test(test_tcp_ban),
		cmocka_unit_test(test_tcp_ipv6),
		cmocka_unit_test(test_reopen_keeps_counters),
		cmocka_unit_test(test_replace_incompatible),
		cmocka_unit_test(test_unpinned_mode),
		cmocka_unit_test(test_no_privilege_falls_back),
	};
	char why[128];
	int fails;

	snprintf(instance, sizeof(instance), "test-bpf-%d", (int)getpid());
	snprintf(pin_dir, sizeof(pin_dir), "%s/%s", BPFL_PIN_ROOT, instance);
	fails = cmocka_run_group_tests_name("bpf classic", classic, NULL, NULL);
	if (!bpf_permitted(why, sizeof(why))) {
		printf("[  SKIPPED ] eBPF filter tests: %s (they need root with CAP_BPF)\n", why);
		return fails;
	}
	fails += cmocka_run_group_tests_name("bpf", ebpf, group_setup, group_teardown);
	return fails;
}
