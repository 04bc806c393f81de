/* test_seal — sealed DATA frames on the client side (client/mi_client.h,
 * docs/PROTOCOL.md "Sealed DATA (keys mode, flags bit 2)").
 *
 * mic_seal_frame() is checked against libsodium used directly with the
 * nonce and associated data built here from the spec (Ns || u64 LE seq;
 * header bytes 0..11 || 16..31): decryption gives the plaintext back, the
 * sealed bytes equal an out-of-place libsodium encryption, every single-bit
 * change of an AD byte, of the ciphertext or of the tag, a wrong key or a
 * wrong Ns makes decryption fail, and pcrc / hcrc are valid.
 *
 * The client itself (opts.seal) is run against a scripted keys-mode server
 * in a thread: frames of the first session must open with its key and Ns;
 * the server then drops the connection, and the frames resent on the second
 * session must open with the second session's key and Ns and give the same
 * plaintexts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/mi_client.h"
#include "common/frame.h"

static const uint8_t NS[16] = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
				0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf };

static void test_key(uint8_t key[32])
{
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
}

/* The spec's nonce and AD, from the frame's header bytes as they are on the
 * wire, built independently of the client code. */
static void spec_nonce_ad(const uint8_t *fr, const uint8_t ns[16], uint8_t nonce[24], uint8_t ad[28])
{
	uint64_t seq = 0;
	for (int i = 0; i < 8; i++)
		seq |= (uint64_t)fr[16 + i] << (8 * i);
	memcpy(nonce, ns, 16);
	for (int i = 0; i < 8; i++)
		nonce[16 + i] = (uint8_t)(seq >> (8 * i));
	memcpy(ad, fr, 12);
	memcpy(ad + 12, fr + 16, 16);
}

/* Opens the sealed frame fr as a server would.  0 with the plaintext in
 * out (*outlen), or -1. */
static int spec_open(const uint8_t *fr, const uint8_t key[32], const uint8_t ns[16], uint8_t *out,
		     unsigned long long *outlen)
{
	uint8_t nonce[24], ad[28];
	uint32_t len = mi_get32(fr + 8);
	spec_nonce_ad(fr, ns, nonce, ad);
	return crypto_aead_xchacha20poly1305_ietf_decrypt(out, outlen, NULL, fr + MI_HDR_LEN, len, ad,
							  sizeof(ad), nonce, key);
}

static uint32_t pattern(uint8_t *p, uint32_t len, uint32_t salt)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 37u + salt * 11u + (i >> 7));
	return len;
}

static void test_seal_layout_and_decrypt(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	uint8_t key[32];
	test_key(key);
	static const uint32_t sizes[] = { 0, 1, 9, 15, 16, 17, 63, 64, 65, 1000, 4096 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint32_t p = sizes[k];
		uint8_t *pt = malloc(p + 1), *fr = malloc(MI_HDR_LEN + p + 16), *back = malloc(p + 1);
		uint8_t *ref = malloc(p + 16);
		assert_non_null(pt);
		assert_non_null(fr);
		assert_non_null(back);
		assert_non_null(ref);
		pattern(pt, p, (uint32_t)k);
		uint64_t seq = 0x0102030405060708ull + k, ts = 0x1122334455667788ull;
		size_t n = mic_seal_frame(fr, MI_HDR_LEN + p + 16, key, NS, 3, seq, ts, pt, p);
		assert_int_equal(n, MI_HDR_LEN + p + 16);

		/* header: DATA, flags bit 2 only, len = p + 16, fields as given */
		struct mi_hdr h;
		assert_int_equal(mi_hdr_decode(fr, &h), 0);   /* magic, version, hcrc */
		assert_int_equal(h.type, MI_DATA);
		assert_int_equal(h.flags, MI_F_SEALED);
		assert_int_equal(h.flags & MI_F_MAC, 0);
		assert_int_equal(h.topic, 3);
		assert_int_equal(h.len, p + 16);
		assert_true(h.seq == seq);
		assert_true(h.ts_ns == ts);
		/* pcrc over the sealed payload, hcrc over bytes 0..31 */
		assert_int_equal(h.pcrc, mi_crc32(fr + MI_HDR_LEN, p + 16));
		assert_int_equal(mi_get32(fr + 32), mi_crc32(fr, 32));

		/* decrypts with the spec's nonce and AD */
		unsigned long long bl = 0;
		assert_int_equal(spec_open(fr, key, NS, back, &bl), 0);
		assert_int_equal(bl, p);
		if (p)
			assert_memory_equal(back, pt, p);

		/* the same bytes as libsodium out of place: ciphertext || tag */
		uint8_t nonce[24], ad[28];
		unsigned long long rl = 0;
		spec_nonce_ad(fr, NS, nonce, ad);
		crypto_aead_xchacha20poly1305_ietf_encrypt(ref, &rl, pt, p, ad, sizeof(ad), NULL, nonce, key);
		assert_int_equal(rl, p + 16);
		assert_memory_equal(ref, fr + MI_HDR_LEN, p + 16);
		/* not the plaintext on the wire */
		if (p >= 16)
			assert_memory_not_equal(fr + MI_HDR_LEN, pt, p);

		/* in place (plaintext already at out + 36) gives the same frame */
		uint8_t *fr2 = malloc(MI_HDR_LEN + p + 16);
		assert_non_null(fr2);
		memcpy(fr2 + MI_HDR_LEN, pt, p);
		assert_int_equal(mic_seal_frame(fr2, MI_HDR_LEN + p + 16, key, NS, 3, seq, ts,
						fr2 + MI_HDR_LEN, p), n);
		assert_memory_equal(fr2, fr, n);
		/* deterministic: sealing again gives the same bytes */
		assert_int_equal(mic_seal_frame(fr2, n, key, NS, 3, seq, ts, pt, p), n);
		assert_memory_equal(fr2, fr, n);
		/* one byte short of room: refused, nothing written past cap */
		assert_int_equal(mic_seal_frame(fr2, n - 1, key, NS, 3, seq, ts, pt, p), 0);
		free(fr2);
		free(pt);
		free(fr);
		free(back);
		free(ref);
	}
}

static void test_seal_any_ad_bit_breaks_the_tag(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	uint8_t key[32], pt[100], fr[MI_HDR_LEN + 100 + 16], back[100];
	test_key(key);
	pattern(pt, sizeof(pt), 1);
	size_t n = mic_seal_frame(fr, sizeof(fr), key, NS, 7, 42, 1764144000000000000ull, pt, sizeof(pt));
	assert_int_equal(n, sizeof(fr));
	unsigned long long bl;
	assert_int_equal(spec_open(fr, key, NS, back, &bl), 0);
	/* every bit of every AD byte: magic, version, type, flags, topic, len,
	 * seq, ts_ns.  (A seq change also changes the nonce: fails either way.) */
	static const int ad_off[28] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
					16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };
	for (int i = 0; i < 28; i++) {
		for (int b = 0; b < 8; b++) {
			uint8_t t[sizeof(fr)];
			memcpy(t, fr, sizeof(fr));
			t[ad_off[i]] ^= (uint8_t)(1u << b);
			uint32_t len = mi_get32(t + 8);
			if (len != sizeof(pt) + 16)
				mi_put32(t + 8, sizeof(pt) + 16);   /* keep the buffer bound... */
			uint8_t nonce[24], ad[28];
			spec_nonce_ad(t, NS, nonce, ad);
			if (len != sizeof(pt) + 16)
				mi_put32(ad + 8, len);               /* ...but authenticate the flipped len */
			int r = crypto_aead_xchacha20poly1305_ietf_decrypt(back, &bl, NULL, t + MI_HDR_LEN,
									   sizeof(pt) + 16, ad, sizeof(ad),
									   nonce, key);
			if (r == 0)
				fail_msg("flipping bit %d of header byte %d still decrypts", b, ad_off[i]);
		}
	}
	/* pcrc and hcrc are not in the AD: changing them does not touch the tag */
	uint8_t t[sizeof(fr)];
	memcpy(t, fr, sizeof(fr));
	t[12] ^= 1;
	t[33] ^= 1;
	assert_int_equal(spec_open(t, key, NS, back, &bl), 0);
}

static void test_seal_any_payload_bit_breaks_the_tag(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	uint8_t key[32], pt[40], fr[MI_HDR_LEN + 40 + 16], back[40];
	test_key(key);
	pattern(pt, sizeof(pt), 2);
	assert_int_equal(mic_seal_frame(fr, sizeof(fr), key, NS, 0, 1, 0, pt, sizeof(pt)), sizeof(fr));
	unsigned long long bl;
	for (size_t i = MI_HDR_LEN; i < sizeof(fr); i++) {   /* ciphertext, then tag */
		for (int b = 0; b < 8; b++) {
			uint8_t t[sizeof(fr)];
			memcpy(t, fr, sizeof(fr));
			t[i] ^= (uint8_t)(1u << b);
			if (spec_open(t, key, NS, back, &bl) == 0)
				fail_msg("flipping bit %d of payload byte %zu still decrypts", b, i - MI_HDR_LEN);
		}
	}
	/* another session's key or server nonce does not open it */
	uint8_t k2[32], ns2[16];
	memcpy(k2, key, 32);
	k2[31] ^= 0x80;
	memcpy(ns2, NS, 16);
	ns2[0] ^= 1;
	assert_int_not_equal(spec_open(fr, k2, NS, back, &bl), 0);
	assert_int_not_equal(spec_open(fr, key, ns2, back, &bl), 0);
	assert_int_equal(spec_open(fr, key, NS, back, &bl), 0);
	assert_memory_equal(back, pt, sizeof(pt));
}

static void test_seal_options_checked(void **state)
{
	(void)state;
	uint8_t key[32];
	test_key(key);
	mic_t *c = NULL;
	struct mic_opts o = { .device = "dev-1", .seal = 1 };
	assert_int_equal(mic_new(&o, &c), -EINVAL);   /* no key */
	o.key = key;
	o.mac = 1;
	assert_int_equal(mic_new(&o, &c), -EINVAL);   /* seal and MAC */
	o.mac = 0;
	assert_int_equal(mic_new(&o, &c), 0);
	mic_close(c);
}

/* ---- the client against a scripted keys-mode server ---- */

#define NFRAMES 10
#define DEVICE "seal-dev"

struct srv {
	int lfd;
	uint16_t port;
	uint8_t key[32];
	char err[512];
	uint8_t want[NFRAMES + 1][300];    /* expected plaintext of seq 1..NFRAMES */
	uint32_t want_len[NFRAMES + 1];
	unsigned opened[3];                /* frames opened per session (1, 2) */
	uint8_t seen_ct4[2][300];          /* seq 4 as sealed in sessions 1 and 2 */
};

__attribute__((format(printf, 2, 3)))
static int srv_fail(struct srv *s, const char *fmt, ...)
{
	if (!s->err[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int read_full(int fd, uint8_t *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, p + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* one frame into fr (header + payload, at most cap bytes) */
static int read_frame(struct srv *s, int fd, uint8_t *fr, size_t cap, struct mi_hdr *h)
{
	if (read_full(fd, fr, MI_HDR_LEN) < 0)
		return srv_fail(s, "read header: connection closed");
	if (mi_hdr_decode(fr, h) < 0)
		return srv_fail(s, "bad header from the client");
	if (h->len > cap - MI_HDR_LEN)
		return srv_fail(s, "frame of %u bytes too large for the test", h->len);
	if (read_full(fd, fr + MI_HDR_LEN, h->len) < 0)
		return srv_fail(s, "read payload: connection closed");
	if (mi_crc32(fr + MI_HDR_LEN, h->len) != h->pcrc)
		return srv_fail(s, "pcrc mismatch (type %u seq %llu)", h->type, (unsigned long long)h->seq);
	return 0;
}

static int send_frame(int fd, uint8_t type, uint64_t seq, const void *pl, uint32_t len)
{
	uint8_t fr[MI_HDR_LEN + 64];
	size_t n = mi_frame_build(fr, sizeof(fr), type, 0, 0, seq, 0, pl, len);
	return write(fd, fr, n) == (ssize_t)n ? 0 : -1;
}

static void kh(const uint8_t key[32], uint8_t out[32], const char *label, const uint8_t ns[16],
	       const uint8_t nc[16], int with_id)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, ns, 16);
	crypto_generichash_update(&st, nc, 16);
	if (with_id)
		crypto_generichash_update(&st, (const uint8_t *)DEVICE, strlen(DEVICE));
	crypto_generichash_final(&st, out, 32);
}

/* Accepts and runs the keys handshake with server nonce ns, WELCOME seq w.
 * Returns the fd (session key in sk) or -1. */
static int srv_handshake(struct srv *s, const uint8_t ns[16], uint64_t w, uint8_t sk[32])
{
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return srv_fail(s, "accept: %s", strerror(errno));
	uint8_t fr[MI_HDR_LEN + 256], nc[16], proof[32];
	struct mi_hdr h;
	if (read_frame(s, fd, fr, sizeof(fr), &h) < 0)
		goto fail;
	if (h.type != MI_HELLO || fr[MI_HDR_LEN] != strlen(DEVICE) ||
	    memcmp(fr + MI_HDR_LEN + 1, DEVICE, strlen(DEVICE)) != 0 || h.len != 1 + strlen(DEVICE) + 16) {
		srv_fail(s, "bad HELLO");
		goto fail;
	}
	memcpy(nc, fr + MI_HDR_LEN + 1 + strlen(DEVICE), 16);
	if (send_frame(fd, MI_CHALLENGE, 0, ns, 16) < 0)
		goto fail;
	if (read_frame(s, fd, fr, sizeof(fr), &h) < 0)
		goto fail;
	kh(s->key, proof, "MI1-auth", ns, nc, 1);
	if (h.type != MI_AUTH || h.len != 32 || memcmp(fr + MI_HDR_LEN, proof, 32) != 0) {
		srv_fail(s, "bad AUTH");
		goto fail;
	}
	uint8_t wp[36];
	mi_put32(wp, 65536);
	kh(s->key, wp + 4, "MI1-srv", ns, nc, 1);
	if (send_frame(fd, MI_WELCOME, w, wp, sizeof(wp)) < 0)
		goto fail;
	kh(s->key, sk, "MI1-sess", ns, nc, 0);
	return fd;
fail:
	close(fd);
	return -1;
}

/* Reads DATA seqs first..last, each sealed for (sk, ns), and checks the
 * plaintexts. */
static int srv_read_sealed(struct srv *s, int fd, int sess, const uint8_t sk[32], const uint8_t ns[16],
			   uint64_t first, uint64_t last)
{
	for (uint64_t q = first; q <= last; q++) {
		uint8_t fr[MI_HDR_LEN + 400], pt[400];
		struct mi_hdr h;
		unsigned long long pl;
		if (read_frame(s, fd, fr, sizeof(fr), &h) < 0)
			return -1;
		if (h.type != MI_DATA || h.seq != q)
			return srv_fail(s, "session %d: want DATA seq %llu, got type %u seq %llu", sess,
					(unsigned long long)q, h.type, (unsigned long long)h.seq);
		if (h.flags != MI_F_SEALED)
			return srv_fail(s, "session %d seq %llu: flags 0x%x, want 0x4", sess,
					(unsigned long long)q, h.flags);
		if (spec_open(fr, sk, ns, pt, &pl) != 0)
			return srv_fail(s, "session %d seq %llu: does not open with this session's key and Ns",
					sess, (unsigned long long)q);
		if (pl != s->want_len[q] || memcmp(pt, s->want[q], pl) != 0)
			return srv_fail(s, "session %d seq %llu: wrong plaintext", sess, (unsigned long long)q);
		if (q == 4)
			memcpy(s->seen_ct4[sess - 1], fr + MI_HDR_LEN, h.len);
		s->opened[sess]++;
	}
	return 0;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	uint8_t ns1[16], ns2[16], sk1[32], sk2[32];
	memset(ns1, 0x11, 16);
	memset(ns2, 0x22, 16);
	/* session 1: every frame arrives sealed for it; ACK 2, then drop */
	int fd = srv_handshake(s, ns1, 0, sk1);
	if (fd < 0)
		return NULL;
	if (srv_read_sealed(s, fd, 1, sk1, ns1, 1, NFRAMES) < 0 || send_frame(fd, MI_ACK, 2, NULL, 0) < 0) {
		close(fd);
		return NULL;
	}
	close(fd);
	/* session 2: WELCOME says 3 is durable; 4.. must come again, sealed anew */
	fd = srv_handshake(s, ns2, 3, sk2);
	if (fd < 0)
		return NULL;
	if (srv_read_sealed(s, fd, 2, sk2, ns2, 4, NFRAMES) == 0 && send_frame(fd, MI_ACK, NFRAMES, NULL, 0) == 0) {
		uint8_t b[64];
		while (read(fd, b, sizeof(b)) > 0)   /* BYE, then EOF */
			;
	}
	close(fd);
	return NULL;
}

static void test_client_seals_and_reseals_after_reconnect(void **state)
{
	(void)state;
	assert_true(sodium_init() >= 0);
	static struct srv s;
	memset(&s, 0, sizeof(s));
	randombytes_buf(s.key, sizeof(s.key));
	s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s.lfd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	assert_int_equal(bind(s.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s.lfd, 4), 0);
	assert_int_equal(getsockname(s.lfd, (struct sockaddr *)&a, &al), 0);
	s.port = ntohs(a.sin_port);
	for (int q = 1; q <= NFRAMES; q++)
		s.want_len[q] = q == 1 ? 0 : pattern(s.want[q], (uint32_t)(q * 29) % 300, (uint32_t)q);

	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, srv_main, &s), 0);
	struct mic_opts o = { .port = s.port, .device = DEVICE, .key = s.key, .seal = 1,
			      .linger_us = -1, .backoff_min_ms = 1, .backoff_max_ms = 5,
			      .retry_deadline_ms = 5000, .ack_timeout_ms = 5000 };
	mic_t *c = NULL;
	assert_int_equal(mic_new(&o, &c), 0);
	assert_int_equal(mic_connect(c, 5000), 0);
	for (int q = 1; q <= NFRAMES; q++) {
		uint64_t seq = 0;
		assert_int_equal(mic_send_ts(c, 0, 1000 + (uint64_t)q, s.want[q], s.want_len[q], &seq), 0);
		assert_int_equal(seq, q);
	}
	int r = mic_flush(c, 10000);
	struct mic_stats st;
	mic_get_stats(c, &st);
	mic_close(c);
	pthread_join(th, NULL);
	close(s.lfd);
	if (s.err[0])
		fail_msg("server: %s", s.err);
	if (r != 0)
		fail_msg("mic_flush: %d", r);
	assert_int_equal(s.opened[1], NFRAMES);
	assert_int_equal(s.opened[2], NFRAMES - 3);
	assert_int_equal(st.acked, NFRAMES);
	assert_int_equal(st.resent, NFRAMES - 3);
	assert_int_equal(st.reconnects, 1);
	assert_int_equal(st.nacked, 0);
	/* the resent frame was sealed again, not sent as it was */
	assert_memory_not_equal(s.seen_ct4[0], s.seen_ct4[1], s.want_len[4] + 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_layout_and_decrypt),
		cmocka_unit_test(test_seal_any_ad_bit_breaks_the_tag),
		cmocka_unit_test(test_seal_any_payload_bit_breaks_the_tag),
		cmocka_unit_test(test_seal_options_checked),
		cmocka_unit_test(test_client_seals_and_reseals_after_reconnect),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
