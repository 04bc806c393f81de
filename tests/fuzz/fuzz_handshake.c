/* fuzz_handshake — libFuzzer target for ingestd's keys-mode handshake and
 * session state machine (docs/PROTOCOL.md, "Handshake (keys mode)").
 *
 * It drives the real server: ingestd/worker.c is compiled into this file
 * (#include below, for its static accept_all / run_ready / publish / reap /
 * teardown), ingestd's other modules (session.c, conn.c, ack.c, auth.c, ...)
 * and libmi (frame decoder, keys registry, shm ring and device table) are
 * linked as they are.  Per input it builds a small worker as
 * ingestd/main.c + worker.c's setup() would: a shm region (unique name per
 * process, unlinked at once so nothing is left behind even on a crash), a
 * keys registry made with keys_new/keys_add, an epoll set with an AF_UNIX
 * listener under worker.c's TAG_LISTEN and an eventfd under TAG_EVENT.
 * Clients connect to that listener; accept_all() takes them.  Each loop
 * pass is worker_run()'s body (pass() below; keep the two in step), so
 * reads go through conn_on_readable() -> mi_dec_next() -> session_frame()
 * exactly as in ingestd, replies through conn_send(), ACKs through
 * ack_scan().  The harness plays flusherd (DURABLE: makes every stored seq
 * durable, releases the ring, wakes the loop through the eventfd).
 *
 * libsodium's random source is replaced by a PRNG reseeded per input, so the
 * server's CHALLENGE nonces (and everything else) repeat run to run.
 *
 * Input: byte 0 = configuration, then operations.
 *
 *   config   bit 0     [auth] require_mac
 *            bit 1     open mode instead of keys mode
 *            bits 2-3  max_frame 256, 1024, 4096, 64K (ring: the smallest the
 *                      settings allow, so backpressure is reachable)
 *            bit 4     open mode: [auth] ndjson on (keys mode refuses NDJSON
 *                      either way); records of NDJSON connections are not
 *                      checked against DATA frames
 *   op byte  bits 0-3  opcode (below)
 *            bits 4-5  connection 0..3 (opened on first use, or again once the
 *                      previous one on that index is closed)
 *            bit 6     hold: no loop pass after this op (several ops' bytes
 *                      then reach the server in one read)
 *            bit 7     split: one more byte follows the op byte, k; a frame
 *                      the op builds is written as k % len bytes, a loop
 *                      pass, then the rest
 *
 *   0 SEND     u16 n (LE), n bytes: raw client bytes (8..15 are SEND too)
 *   1 HELLO    u8 sel, u8 var: a well-formed HELLO; sel & 7 picks the device
 *              id (the registry's four, or unknown ones); var bit 0 sends
 *              the fingerprint, bit 1 a wrong one, bit 2 reuses the last
 *              client nonce, bit 3 breaks the payload CRC
 *   2 AUTH     u8 var: the correct proof for the first well-formed HELLO
 *              sent on this connection (bit 3: the last), computed from the
 *              CHALLENGE the client received and the device's registry key
 *              (an unknown device: a wrong key); bit 0 flips a proof bit,
 *              bit 1 uses another device's key, bit 2 breaks the payload
 *              CRC, bit 4 sends 33 bytes
 *   3 DATA     u8 fl, u8 sq, u8 topic, u8 plen: a DATA frame with plen
 *              generated payload bytes, sealed (fl bit 1) or with a MAC (fl
 *              bit 0) under the session key the client derived; fl bit 2
 *              spoils the MAC / tag, bit 3 the payload CRC, bit 4 sets ts_ns,
 *              bit 5 an unknown flag bit; fl bits 6-7 pick the seq: next,
 *              next + sq, sq below the last one (a retry), or sq itself
 *   4 FRAME    u8 type, u8 flags, u8 seq, u16 len (LE), len bytes: any frame
 *              with a valid header (flags bit 7: bad payload CRC instead)
 *   5 DURABLE  u8 ignored: flusherd made everything durable
 *   6 CLOSE    u8 how: bit 0 shutdown(SHUT_WR) (acks may still come), else close()
 *   7 MUTE     u8 how: bit 0 clear: the client stops reading and the server
 *              socket's SO_SNDBUF shrinks (a slow link: replies queue in the
 *              connection's output buffer); set: it reads again
 *
 * Invariants (abort() on violation):
 *   - keys mode: a connection is in CS_SESSION (or got a WELCOME) only
 *     after the client sent an AUTH whose payload is the proof of one of
 *     its HELLOs for an enabled registry device, with the fingerprint the
 *     registry demands, under the CHALLENGE nonce it received; the server
 *     proof in WELCOME and the session key the server keeps are the ones
 *     the spec derives; unknown and disabled devices and wrong proofs never
 *     get there; at most one CHALLENGE and one WELCOME per connection;
 *   - a valid AUTH (made by the AUTH op for an enabled device, nothing else
 *     pending) does get a WELCOME;
 *   - every record in the ring is a DATA frame some client sent on a
 *     connection that got a WELCOME for that device (or has one unread),
 *     with a valid MAC or
 *     seal (when present, and when required by [auth] require_mac or the
 *     device's require=), in the device's topic scopes, stored without the
 *     MAC / opened, record CRC right, seqs per device increasing;
 *   - every byte the server writes parses as frames of a server type
 *     (CHALLENGE, WELCOME, ACK, NACK, PONG) with valid CRCs and sane
 *     payloads, and no frame is cut at the close (except on a connection
 *     that stopped reading: a close drops unsent output); ACKs never
 *     exceed what the connection sent;
 *   - nothing is left at the end: every connection closed, every pool
 *     buffer back, ASan/LSan for the rest.
 */
#include "ingestd/worker.c"

#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sys/un.h>

#include "common/keys.h"
#include "common/record.h"
#include "shm/devtab.h"
#include "shm/ring.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* main.c's, declared by worker.c */
volatile int ingestd_stop, ingestd_reload;

#define CHECK(c)                                                                                  \
	do {                                                                                      \
		if (!(c)) {                                                                       \
			fprintf(stderr, "fuzz_handshake.c:%d: invariant failed: %s\n", __LINE__, #c); \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

/* The harness's own code is left out of the coverage libFuzzer steers by:
 * only the server's edges count (and libFuzzer's per-feature bookkeeping,
 * the main cost per run, stays small). */
#define HARNESS __attribute__((no_sanitize("coverage")))

#define MAXC 4          /* connection indices an op can name */
#define MAXMODELS 32    /* connections per input */
#define MAXOPS 512
#define NDEV_SLOTS 2    /* device-table slots: a third enabled device finds it full */
#define MAX_FD 256       /* fds the worker takes (accept_all refuses above) */

/* ---- deterministic libsodium randomness ---- */

static uint64_t rng_state;

HARNESS static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *rng_name(void) { return "fuzz_handshake"; }
static uint32_t rng_random(void) { return (uint32_t)rng_next(); }

HARNESS static void rng_buf(void *const buf, const size_t size)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < size; i++)
		p[i] = (uint8_t)rng_next();
}

static randombytes_implementation rng_impl = {
	.implementation_name = rng_name, .random = rng_random, .buf = rng_buf,
};

/* ---- the registry ---- */

struct dev_spec {
	const char *id;
	const char *topics;
	uint16_t allowed[2];      /* topic ids of the scopes (nallowed 0: all) */
	int nallowed;
	int has_fpr;
	int enabled;
	int require;              /* enum keys_require */
	uint8_t key[KEYS_KEY_LEN];
	uint8_t fpr[KEYS_FPR_LEN];
};

#define TOPIC_TELEMETRY 3
#define TOPIC_LOGS 4

static struct dev_spec specs[] = {
	{ .id = "sensor-1", .topics = "*", .enabled = 1, .require = KEYS_REQ_NONE },
	{ .id = "gw:7.a_b-c", .topics = "telemetry,logs", .allowed = { TOPIC_TELEMETRY, TOPIC_LOGS }, .nallowed = 2,
	  .has_fpr = 1, .enabled = 1, .require = KEYS_REQ_MAC },
	{ .id = "old-unit", .topics = "*", .enabled = 0, .require = KEYS_REQ_NONE },
	{ .id = "seal-only", .topics = "*", .enabled = 1, .require = KEYS_REQ_SEAL },
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

/* HELLO op device ids: the registry's, then unknown ones */
static const char *const hello_ids[8] = {
	"sensor-1", "gw:7.a_b-c", "old-unit", "seal-only", "ghost", "Sensor-1", "x",
	"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.:",
};

static const uint8_t wrong_key[KEYS_KEY_LEN] = { 0x4d, 0x49, 0x31, 0xff };

HARNESS static const struct dev_spec *spec_find(const char *id, size_t len)
{
	for (size_t i = 0; i < NSPECS; i++)
		if (strlen(specs[i].id) == len && !memcmp(specs[i].id, id, len))
			return &specs[i];
	return NULL;
}

/* ---- the client side's view of each connection ---- */

struct hello {
	uint8_t id_len;
	char id[MI_DEVID_MAX + 1];
	uint8_t nonce[MI_NONCE_LEN];
	uint8_t has_fpr;
	uint8_t fpr[MI_FPR_LEN];
};

/* a DATA frame the server may store: its record must match one */
struct entry {
	uint64_t seq, ts;
	uint32_t dlen, dcrc;
	uint16_t topic;
};

struct model {
	int cli;                  /* client socket, -1 once closed */
	int wr_closed;            /* client shut its side (or closed): no new ops here */
	int eof;                  /* the server closed (client read EOF) */
	struct conn *srv;         /* the server's connection while it lives */
	int sfd;
	uint8_t *txq;             /* written by ops, not yet taken by the socket */
	size_t txq_len, txq_cap;
	struct mi_decoder txdec;  /* what the client sent, decoded */
	struct mi_decoder rxdec;  /* what the server sent */
	int tx_any, ndjson, tx_broken;
	int muted, ever_muted;    /* client not reading (MUTE) */
	struct hello *hellos;
	size_t nhellos, caphellos;
	struct entry *ents;
	size_t nents, capents;
	int have_ns;
	uint8_t ns[MI_NONCE_LEN];
	int good_auth;            /* a valid proof was sent (keys mode) */
	struct hello good_h;
	const struct dev_spec *good_dev;
	uint8_t sess[32];
	int welcome;
	uint64_t seq_base, max_data_seq, last_ack;
	uint8_t last_nonce[MI_NONCE_LEN];
	uint32_t nonce_ctr;
};

static struct {
	struct settings s;
	keys_t *keys;
	shm_region_t reg;
	struct worker w;
	pool_t *cpool;            /* the clients' decoders */
	uint8_t *rbuf;            /* client reads */
	uint8_t *srv_rbuf;        /* the worker's rbuf (READ_MAX) */
	char lname[64];
	socklen_t lname_len;
	struct model m[MAXMODELS];
	int nmodels;
	int cur[MAXC];
	uint64_t ring_pos;        /* ring records checked up to here */
	uint64_t last_seq[NSPECS + 8];
	int keys_mode;
	int trace;                /* FUZZ_HS_TRACE set: what each connection gets */
} H;

HARNESS static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap * 2 : 8;
	while (n < need)
		n *= 2;
	p = realloc(p, n * elem);
	CHECK(p);
	*cap = n;
	return p;
}

HARNESS static void kdf(uint8_t out[32], const uint8_t key[32], const char *label, const uint8_t ns[MI_NONCE_LEN],
		const struct hello *h, int with_id)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, ns, MI_NONCE_LEN);
	crypto_generichash_update(&st, h->nonce, MI_NONCE_LEN);
	if (with_id) {
		crypto_generichash_update(&st, (const uint8_t *)h->id, h->id_len);
		if (h->has_fpr)
			crypto_generichash_update(&st, h->fpr, MI_FPR_LEN);
	}
	crypto_generichash_final(&st, out, 32);
}

HARNESS static int fpr_ok(const struct dev_spec *d, const struct hello *h)
{
	return !d->has_fpr || (h->has_fpr && !memcmp(d->fpr, h->fpr, MI_FPR_LEN));
}

HARNESS static int topic_ok(const struct dev_spec *d, uint16_t topic)
{
	if (!d->nallowed)
		return 1;
	for (int i = 0; i < d->nallowed; i++)
		if (d->allowed[i] == topic)
			return 1;
	return 0;
}

HARNESS static void seal_nonce(uint8_t nonce[24], uint64_t seq, const uint8_t ns[MI_NONCE_LEN])
{
	memcpy(nonce, ns, MI_NONCE_LEN);
	mi_put64(nonce + MI_NONCE_LEN, seq);
}

HARNESS static void seal_ad(uint8_t ad[28], const struct mi_hdr *h)
{
	uint8_t hb[MI_HDR_LEN];
	mi_hdr_encode(h, hb);
	memcpy(ad, hb, 12);
	memcpy(ad + 12, hb + 16, 16);
}

/* A frame the client sent, as the server will see it. */
HARNESS static void tx_frame(struct model *m, const struct mi_frame *f)
{
	const struct mi_hdr *h = &f->h;
	const uint8_t *p = f->payload;
	switch (h->type) {
	case MI_HELLO: {
		if (!f->pcrc_ok || h->len < 1)
			return;
		uint32_t id_len = p[0];
		if (id_len == 0 || h->len != 1 + id_len + MI_NONCE_LEN + ((h->flags & MI_F_FPR) ? MI_FPR_LEN : 0) ||
		    !mi_devid_valid(p + 1, id_len))
			return;
		m->hellos = grow(m->hellos, &m->caphellos, m->nhellos + 1, sizeof(*m->hellos));
		struct hello *e = &m->hellos[m->nhellos++];
		memset(e, 0, sizeof(*e));
		e->id_len = (uint8_t)id_len;
		memcpy(e->id, p + 1, id_len);
		memcpy(e->nonce, p + 1 + id_len, MI_NONCE_LEN);
		if (h->flags & MI_F_FPR) {
			e->has_fpr = 1;
			memcpy(e->fpr, p + 1 + id_len + MI_NONCE_LEN, MI_FPR_LEN);
		}
		return;
	}
	case MI_AUTH:
		if (!H.keys_mode || m->good_auth || !m->have_ns || !f->pcrc_ok || h->len != MI_PROOF_LEN)
			return;
		for (size_t i = 0; i < m->nhellos; i++) {
			const struct hello *e = &m->hellos[i];
			const struct dev_spec *d = spec_find(e->id, e->id_len);
			uint8_t want[32];
			if (!d || !d->enabled || !fpr_ok(d, e))
				continue;
			kdf(want, d->key, "MI1-auth", m->ns, e, 1);
			if (!memcmp(want, p, 32)) {
				m->good_auth = 1;
				m->good_h = *e;
				m->good_dev = d;
				kdf(m->sess, d->key, "MI1-sess", m->ns, e, 0);
				return;
			}
		}
		return;
	case MI_DATA: {
		if (h->seq > m->max_data_seq)
			m->max_data_seq = h->seq;
		if (!f->pcrc_ok)
			return;
		struct entry e = { .seq = h->seq, .ts = h->ts_ns, .dlen = h->len, .dcrc = h->pcrc, .topic = h->topic };
		if (!H.keys_mode) {
			if (h->flags & (MI_F_MAC | MI_F_SEALED))
				return;
		} else {
			if (!m->good_auth)
				return;
			const struct dev_spec *d = m->good_dev;
			if (!topic_ok(d, h->topic))
				return;
			if ((h->flags & MI_F_MAC) && (h->flags & MI_F_SEALED))
				return;
			if (h->flags & MI_F_SEALED) {
				uint8_t nonce[24], ad[28];
				unsigned long long mlen;
				if (h->len < 16)
					return;
				uint8_t *plain = malloc(h->len);
				CHECK(plain);
				seal_nonce(nonce, h->seq, m->ns);
				seal_ad(ad, h);
				int ok = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &mlen, NULL, p, h->len, ad,
										    sizeof(ad), nonce, m->sess) == 0;
				if (ok) {
					e.dlen = (uint32_t)mlen;
					e.dcrc = mi_crc32(plain, mlen);
				}
				free(plain);
				if (!ok)
					return;
			} else if (h->flags & MI_F_MAC) {
				uint8_t mac[MI_MAC_LEN];
				if (h->len < MI_MAC_LEN || d->require == KEYS_REQ_SEAL)
					return;
				mi_frame_mac(mac, m->sess, h, p, h->len - MI_MAC_LEN);
				if (memcmp(mac, p + h->len - MI_MAC_LEN, MI_MAC_LEN))
					return;
				e.dlen = h->len - MI_MAC_LEN;
				e.dcrc = mi_crc32(p, e.dlen);
			} else if (H.s.require_mac || d->require != KEYS_REQ_NONE) {
				return;
			}
		}
		m->ents = grow(m->ents, &m->capents, m->nents + 1, sizeof(*m->ents));
		m->ents[m->nents++] = e;
		return;
	}
	default:
		return;
	}
}

/* Bytes the client sends: into its model, then the socket (via txq). */
HARNESS static void tx(struct model *m, const uint8_t *buf, size_t len)
{
	if (!len || m->cli < 0 || m->wr_closed)
		return;
	if (!m->tx_any) {
		m->tx_any = 1;
		m->ndjson = buf[0] == '{';
	}
	for (size_t off = 0; !m->ndjson && !m->tx_broken && off < len;) {
		struct mi_frame f;
		size_t used;
		int r = mi_dec_next(&m->txdec, buf + off, len - off, &used, &f);
		off += used;
		if (r < 0)
			m->tx_broken = 1;
		else if (r == MI_DEC_FRAME)
			tx_frame(m, &f);
	}
	m->txq = grow(m->txq, &m->txq_cap, m->txq_len + len, 1);
	memcpy(m->txq + m->txq_len, buf, len);
	m->txq_len += len;
}

HARNESS static void rx_frame(struct model *m, const struct mi_frame *f)
{
	const struct mi_hdr *h = &f->h;
	const uint8_t *p = f->payload;
	if (H.trace) {
		if (h->type == MI_NACK && h->len >= 2 && f->pcrc_ok)
			fprintf(stderr, "  conn %d <- NACK %u seq %llu: %.*s\n", (int)(m - H.m), mi_get16(p),
				(unsigned long long)h->seq, (int)h->len - 2, (const char *)p + 2);
		else
			fprintf(stderr, "  conn %d <- %s seq %llu len %u\n", (int)(m - H.m), mi_type_name(h->type),
				(unsigned long long)h->seq, h->len);
	}
	CHECK(f->pcrc_ok);
	switch (h->type) {
	case MI_CHALLENGE:
		CHECK(H.keys_mode);
		CHECK(h->len == MI_NONCE_LEN && h->seq == 0 && h->flags == 0 && h->topic == 0);
		CHECK(!m->have_ns && !m->welcome);
		CHECK(m->nhellos > 0);
		m->have_ns = 1;
		memcpy(m->ns, p, MI_NONCE_LEN);
		break;
	case MI_WELCOME:
		CHECK(!m->welcome);
		CHECK(h->len == 4 + MI_PROOF_LEN && h->flags == 0);
		CHECK(mi_get32(p) == H.s.max_frame);
		CHECK(m->nhellos > 0);
		if (H.keys_mode) {
			uint8_t want[32];
			CHECK(m->have_ns && m->good_auth);
			CHECK(m->good_dev->enabled && fpr_ok(m->good_dev, &m->good_h));
			kdf(want, m->good_dev->key, "MI1-srv", m->ns, &m->good_h, 1);
			CHECK(!memcmp(want, p + 4, 32));
		} else {
			static const uint8_t zero[32];
			CHECK(!memcmp(p + 4, zero, 32));
		}
		m->welcome = 1;
		if (h->seq > m->seq_base)
			m->seq_base = h->seq;
		break;
	case MI_ACK:
		CHECK(h->len == 0 && m->welcome);
		CHECK(h->seq > 0 && h->seq <= m->max_data_seq && h->seq >= m->last_ack);
		m->last_ack = h->seq;
		break;
	case MI_NACK:
		CHECK(h->len >= 2 && h->len <= 2 + 200);
		CHECK(mi_get16(p) >= 1 && mi_get16(p) < MI_NACK_MAX);
		break;
	case MI_PONG:
		CHECK(h->len == 0);
		break;
	default:
		CHECK(!"server sent a frame of a client type");
	}
}

HARNESS static void rx(struct model *m, const uint8_t *buf, size_t len)
{
	if (m->ndjson)
		return;   /* the error line of an NDJSON connection */
	for (size_t off = 0; off < len;) {
		struct mi_frame f;
		size_t used;
		int r = mi_dec_next(&m->rxdec, buf + off, len - off, &used, &f);
		off += used;
		CHECK(r >= 0);                 /* server output must frame */
		CHECK(r != MI_DEC_TOO_LARGE);
		if (r == MI_DEC_FRAME)
			rx_frame(m, &f);
	}
}

/* ---- the loop ---- */

/* One pass of worker_run()'s loop, without its ticks and stop handling:
 * the event dispatch is worker.c's own handle_events().  Returns whether
 * it did anything. */
static int pass(struct worker *w)
{
	struct epoll_event evs[64];
	int n = epoll_wait(w->ep, evs, 64, 0);
	int ev = handle_events(w, evs, n > 0 ? n : 0), busy = ev & EV_WORK;
	if (ack_poll(w, ev & EV_DURABLE))
		ev |= EV_DURABLE;
	if (ev & EV_DURABLE)
		w->ring_full = 0;
	if (w->ready_head && !w->ring_full) {
		run_ready(w);
		busy = 1;
	}
	publish(w);
	if ((ev & EV_DURABLE) || w->ack_scan)
		ack_scan(w);
	return busy;
}

HARNESS static int flush_tx(struct model *m)
{
	int moved = 0;
	while (m->cli >= 0 && m->txq_len) {
		ssize_t n = send(m->cli, m->txq, m->txq_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				m->txq_len = 0;   /* EPIPE / ECONNRESET: the server is gone */
			break;
		}
		memmove(m->txq, m->txq + n, m->txq_len - (size_t)n);
		m->txq_len -= (size_t)n;
		moved = 1;
	}
	return moved;
}

HARNESS static int drain(struct model *m)
{
	int moved = 0;
	while (m->cli >= 0 && !m->eof) {
		ssize_t n = recv(m->cli, H.rbuf, 65536, MSG_DONTWAIT);
		if (n > 0) {
			rx(m, H.rbuf, (size_t)n);
			moved = 1;
			/* only pass() writes to it: a short read emptied the socket
			 * (an EOF behind the data shows in the next round's poll) */
			if (n < 65536)
				break;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* EOF or ECONNRESET: the server closed; no frame may be cut */
		m->eof = 1;
		if (H.trace)
			fprintf(stderr, "  conn %d <- closed\n", (int)(m - H.m));
		moved = 1;
		if (!m->ndjson && !m->ever_muted)
			CHECK(mi_dec_idle(&m->rxdec));
	}
	return moved;
}

/* The client sockets with something to read (one poll), drained. */
HARNESS static int drain_all(void)
{
	struct pollfd pf[MAXMODELS];
	int idx[MAXMODELS], n = 0, moved = 0;
	for (int i = 0; i < H.nmodels; i++)
		if (H.m[i].cli >= 0 && !H.m[i].eof && !H.m[i].muted) {
			pf[n].fd = H.m[i].cli;
			pf[n].events = POLLIN;
			pf[n].revents = 0;
			idx[n++] = i;
		}
	if (!n || poll(pf, (nfds_t)n, 0) <= 0)
		return 0;
	for (int k = 0; k < n; k++)
		if (pf[k].revents)
			moved |= drain(&H.m[idx[k]]);
	return moved;
}

HARNESS static int server_alive(const struct model *m)
{
	return m->srv && H.w.conns[m->sfd] == m->srv && m->srv->state != CS_CLOSING;
}

HARNESS static void check_conns(void)
{
	struct worker *w = &H.w;
	for (int i = 0; i < H.nmodels; i++) {
		struct model *m = &H.m[i];
		if (m->srv && !server_alive(m))
			m->srv = NULL;
		if (!m->srv)
			continue;
		struct conn *c = m->srv;
		/* a reply the client has not read yet: buffered, or unread (muted) */
		int unread = c->wlen || m->muted;
		switch (c->state) {
		case CS_NEW:
		case CS_AWAIT_HELLO:
			CHECK(!c->hs && c->slot < 0 && !c->keyed);
			break;
		case CS_AWAIT_AUTH:
			CHECK(H.keys_mode && c->hs && c->slot < 0 && !c->keyed);
			CHECK(m->have_ns || unread);
			CHECK(!memcmp(c->hs->snonce, m->ns, MI_NONCE_LEN) || unread);
			break;
		case CS_SESSION: {
			CHECK(!c->hs && c->slot >= 0 && (uint32_t)c->slot < w->ctl->ndevices && w->by_slot[c->slot] == c);
			CHECK(m->welcome || unread);
			const struct shm_dev *d = shm_dev(w->ctl, (uint32_t)c->slot);
			if (H.keys_mode) {
				CHECK(m->good_auth && c->keyed);
				CHECK(!memcmp(c->sess_key, m->sess, 32));
				CHECK(d->id_len == m->good_h.id_len && !memcmp(d->id, m->good_h.id, d->id_len));
			} else {
				CHECK(!c->keyed);
			}
			break;
		}
		case CS_NDJSON:
			CHECK(!H.keys_mode && H.s.ndjson && m->ndjson);
			break;
		default:
			CHECK(!"connection in an impossible state");
		}
	}
	for (uint32_t i = 0; i < w->ctl->ndevices; i++)
		if (w->by_slot[i])
			CHECK(w->by_slot[i]->slot == (int32_t)i && w->by_slot[i]->state == CS_SESSION);
}

HARNESS static int rec_allowed(const struct rec_hdr *r, uint32_t crc)
{
	for (int i = 0; i < H.nmodels; i++)
		if (H.m[i].ndjson && !H.keys_mode && H.s.ndjson)
			return 1;   /* NDJSON stores without a session (open mode) */
	for (int i = 0; i < H.nmodels; i++) {
		const struct model *m = &H.m[i];
		int dev_ok = 0;
		if (!m->welcome && !m->muted)   /* muted: the WELCOME may wait unread */
			continue;
		if (H.keys_mode) {
			dev_ok = m->good_auth && m->good_h.id_len == r->id_len && !memcmp(m->good_h.id, rec_id(r), r->id_len);
		} else {
			for (size_t j = 0; j < m->nhellos && !dev_ok; j++)
				dev_ok = m->hellos[j].id_len == r->id_len && !memcmp(m->hellos[j].id, rec_id(r), r->id_len);
		}
		if (!dev_ok)
			continue;
		for (size_t j = 0; j < m->nents; j++) {
			const struct entry *e = &m->ents[j];
			if (e->seq == r->seq && e->dlen == r->plen && e->dcrc == crc && e->topic == r->topic &&
			    (!e->ts || e->ts == r->ts_ns))
				return 1;
		}
	}
	return 0;
}

HARNESS static void check_ring(void)
{
	struct worker *w = &H.w;
	struct ring_cons rc;
	const struct rec_hdr *r;
	int err;
	CHECK(w->published == w->ring.head);
	ring_cons_attach(&rc, w->ring.h, H.ring_pos);
	while ((r = ring_cons_peek(&rc, w->ring.head, &err))) {
		CHECK(r->type == REC_DATA);
		CHECK(rec_crc(r) == r->crc);
		CHECK(r->seq > 0 && r->id_len > 0 && r->slot < w->ctl->ndevices);
		const struct shm_dev *d = shm_dev(w->ctl, r->slot);
		CHECK(d->id_len == r->id_len && !memcmp(d->id, rec_id(r), r->id_len));
		CHECK(r->seq > H.last_seq[r->slot]);
		H.last_seq[r->slot] = r->seq;
		if (H.trace)
			fprintf(stderr, "  ring: %.*s seq %llu topic %u, %u bytes\n", r->id_len, (const char *)rec_id(r),
				(unsigned long long)r->seq, r->topic, r->plen);
		CHECK(rec_allowed(r, mi_crc32(rec_payload(r), r->plen)));
		ring_cons_advance(&rc, rec_total(r));
	}
	CHECK(err == 0);
	H.ring_pos = rc.pos;
}

/* Loop passes and client I/O until nothing moves, then the checks. */
HARNESS static void pump(void)
{
	for (int round = 0;; round++) {
		CHECK(round < 10000);
		int busy = 0;
		for (int i = 0; i < H.nmodels; i++)
			busy |= flush_tx(&H.m[i]);
		busy |= pass(&H.w);
		busy |= drain_all();
		if (!busy)
			break;
	}
	check_conns();
	check_ring();
}

/* ---- connections ---- */

HARNESS static void model_close(struct model *m)
{
	if (m->cli >= 0)
		close(m->cli);
	m->cli = -1;
	m->wr_closed = 1;
}

/* The connection of index ci, opened (or opened again) if need be. */
HARNESS static struct model *conn_for(int ci)
{
	if (H.cur[ci] >= 0) {
		struct model *m = &H.m[H.cur[ci]];
		if (!m->wr_closed && !m->eof)
			return m;
		model_close(m);
	}
	if (H.nmodels == MAXMODELS)
		return NULL;
	pump();   /* settle, so the only event left is this connection's accept */
	struct worker *w = &H.w;
	struct model *m = &H.m[H.nmodels];
	memset(m, 0, sizeof(*m));
	m->cli = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(m->cli >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, H.lname, H.lname_len);
	CHECK(connect(m->cli, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + H.lname_len)) == 0);
	mi_dec_init(&m->txdec, H.cpool, (uint32_t)H.s.max_frame);
	mi_dec_init(&m->rxdec, H.cpool, 4096);
	H.cur[ci] = H.nmodels++;
	/* which server connection is new: not one a live model holds */
	uint32_t before = w->nconns;
	pass(w);
	m->sfd = -1;
	for (int fd = 0; fd < w->nconns_max_fd; fd++) {
		struct conn *c = w->conns[fd];
		if (!c || c->state == CS_CLOSING)
			continue;
		int held = 0;
		for (int i = 0; i < H.nmodels - 1 && !held; i++)
			held = server_alive(&H.m[i]) && H.m[i].sfd == fd;
		if (!held) {
			CHECK(m->sfd < 0);
			m->sfd = fd;
			m->srv = c;
		}
	}
	/* refused (max_connections) or taken */
	CHECK(m->srv ? w->nconns == before + 1 : w->nconns == before);
	pump();
	return m;
}

/* Corrupts a built frame's payload CRC (header CRC kept valid). */
HARNESS static void break_pcrc(uint8_t *fr)
{
	struct mi_hdr h;
	CHECK(mi_hdr_decode(fr, &h) == 0);
	h.pcrc ^= 1;
	mi_hdr_encode(&h, fr);
}

/* A frame built by an op: whole, or in two writes with a pass between. */
HARNESS static void send_frame(struct model *m, const uint8_t *fr, size_t n, int split)
{
	if (split > 0 && (size_t)split % n) {
		size_t k = (size_t)split % n;
		tx(m, fr, k);
		pump();
		tx(m, fr + k, n - k);
	} else {
		tx(m, fr, n);
	}
}

/* ---- ops ---- */

struct in {
	const uint8_t *p;
	size_t n;
};

HARNESS static uint8_t in_u8(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

HARNESS static uint16_t in_u16(struct in *in)
{
	uint16_t lo = in_u8(in);
	return (uint16_t)(lo | in_u8(in) << 8);
}

HARNESS static void op_hello(struct model *m, struct in *in, int split)
{
	uint8_t sel = in_u8(in), var = in_u8(in);
	const char *id = hello_ids[sel & 7];
	size_t id_len = strlen(id);
	uint8_t pl[1 + MI_DEVID_MAX + MI_NONCE_LEN + MI_FPR_LEN], fr[MI_HDR_LEN + sizeof(pl)];
	pl[0] = (uint8_t)id_len;
	memcpy(pl + 1, id, id_len);
	if (!(var & 4)) {
		m->nonce_ctr++;
		for (int i = 0; i < MI_NONCE_LEN; i++)
			m->last_nonce[i] = (uint8_t)(m->nonce_ctr * 31 + (uint32_t)i * 7 + (uint32_t)(m - H.m));
	}
	memcpy(pl + 1 + id_len, m->last_nonce, MI_NONCE_LEN);
	size_t len = 1 + id_len + MI_NONCE_LEN;
	uint16_t flags = 0;
	if (var & 1) {
		memcpy(pl + len, specs[1].fpr, MI_FPR_LEN);
		if (var & 2)
			pl[len + 5] ^= 0x40;
		len += MI_FPR_LEN;
		flags = MI_F_FPR;
	}
	size_t n = mi_frame_build(fr, sizeof(fr), MI_HELLO, flags, 0, 0, 0, pl, (uint32_t)len);
	if (var & 8)
		break_pcrc(fr);
	send_frame(m, fr, n, split);
}

HARNESS static void op_auth(struct model *m, struct in *in, int split)
{
	uint8_t var = in_u8(in);
	uint8_t proof[33] = { 0 }, fr[MI_HDR_LEN + 33];
	if (m->nhellos) {
		const struct hello *h = &m->hellos[(var & 8) ? m->nhellos - 1 : 0];
		const struct dev_spec *d = spec_find(h->id, h->id_len);
		const uint8_t *key = d ? d->key : wrong_key;
		if (var & 2)
			key = d && d != &specs[0] ? specs[0].key : specs[1].key;
		kdf(proof, key, "MI1-auth", m->ns, h, 1);
	}
	if (var & 1)
		proof[var >> 5] ^= 1;
	uint32_t len = (var & 16) ? 33 : 32;
	size_t n = mi_frame_build(fr, sizeof(fr), MI_AUTH, 0, 0, 0, 0, proof, len);
	if (var & 4)
		break_pcrc(fr);
	/* the liveness check: a correct AUTH for an enabled device, nothing
	 * else pending, must get its WELCOME */
	int expect = H.keys_mode && !(var & (1 | 2 | 4 | 8 | 16)) && m->nhellos == 1 && m->have_ns && !m->welcome &&
		     !m->muted &&
		     !m->tx_broken && mi_dec_idle(&m->txdec) && !m->txq_len && server_alive(m) &&
		     m->srv->state == CS_AWAIT_AUTH;
	if (expect) {
		const struct dev_spec *d = spec_find(m->hellos[0].id, m->hellos[0].id_len);
		expect = d && d->enabled && fpr_ok(d, &m->hellos[0]);
	}
	send_frame(m, fr, n, split);
	if (expect) {
		pump();
		/* the ring may have stalled the read, or the table be full */
		CHECK(m->welcome || H.w.ring_full || devtab_count(H.w.ctl) == H.w.ctl->ndevices);
	}
}

HARNESS static void op_data(struct model *m, struct in *in, int split)
{
	uint8_t fl = in_u8(in), sq = in_u8(in), topic = in_u8(in), plen = in_u8(in);
	uint64_t seq;
	switch (fl >> 6) {
	case 0: seq = m->seq_base + 1; break;
	case 1: seq = m->seq_base + 1 + sq; break;
	case 2: seq = m->seq_base > sq ? m->seq_base - sq : 0; break;
	default: seq = sq; break;
	}
	if (seq > m->seq_base)
		m->seq_base = seq;
	uint8_t data[255], pl[255 + 16], fr[MI_HDR_LEN + sizeof(pl)];
	for (unsigned i = 0; i < plen; i++)
		data[i] = (uint8_t)(seq * 13 + i);
	uint16_t flags = (uint16_t)(((fl & 1) ? MI_F_MAC : 0) | ((fl & 2) ? MI_F_SEALED : 0) | ((fl & 32) ? 8 : 0));
	uint64_t ts = (fl & 16) ? 1714564800123000000ull + seq : 0;
	uint32_t len = plen;
	struct mi_hdr h = { .version = MI_VERSION, .type = MI_DATA, .flags = flags, .topic = topic, .seq = seq, .ts_ns = ts };
	if (fl & 2) {
		uint8_t nonce[24], ad[28];
		unsigned long long clen;
		h.len = plen + 16u;
		seal_nonce(nonce, seq, m->ns);
		seal_ad(ad, &h);
		crypto_aead_xchacha20poly1305_ietf_encrypt(pl, &clen, data, plen, ad, sizeof(ad), NULL, nonce, m->sess);
		len = (uint32_t)clen;
	} else if (fl & 1) {
		h.len = plen + 16u;
		memcpy(pl, data, plen);
		mi_frame_mac(pl + plen, m->sess, &h, data, plen);
		len = plen + 16u;
	} else {
		memcpy(pl, data, plen);
	}
	if ((fl & 4) && len)
		pl[len - 1] ^= 0x80;
	size_t n = mi_frame_build(fr, sizeof(fr), MI_DATA, flags, topic, seq, ts, pl, len);
	if (fl & 8)
		break_pcrc(fr);
	send_frame(m, fr, n, split);
}

HARNESS static void op_frame(struct model *m, struct in *in, int split)
{
	uint8_t type = in_u8(in), flags = in_u8(in), seq = in_u8(in);
	uint16_t len = in_u16(in);
	if (len > in->n)
		len = (uint16_t)in->n;
	uint8_t *fr = malloc(MI_HDR_LEN + (size_t)len);
	CHECK(fr);
	size_t n = mi_frame_build(fr, MI_HDR_LEN + (size_t)len, type, flags & 0x7f, 0, seq, 0, in->p, len);
	in->p += len;
	in->n -= len;
	if (flags & 0x80)
		break_pcrc(fr);
	send_frame(m, fr, n, split);
	free(fr);
}

/* flusherd: every stored seq durable, the ring released, the loop woken */
HARNESS static void op_durable(void)
{
	struct worker *w = &H.w;
	for (uint32_t i = 0; i < w->ctl->ndevices; i++) {
		struct shm_dev *d = shm_dev(w->ctl, i);
		if (shm_load_acquire(&d->state) == DEV_READY)
			shm_store_release(&d->last_durable, shm_load_acquire(&d->last_accepted));
	}
	uint64_t head = shm_load_acquire(&w->ring.h->head);
	shm_store_release(&w->ring.h->tail, head);
	shm_store_release(&w->ring.h->released, head);
	uint64_t one = 1;
	CHECK(write(w->efd, &one, sizeof(one)) == sizeof(one));
}

/* ---- per input ---- */

/* as auth.c resolves the keys file's topic names */
static int topic_lookup(void *ctx, const char *name, size_t len)
{
	return settings_topic_id(ctx, name, len);
}

HARNESS static void setup_input(uint8_t cfg)
{
	static const uint64_t max_frames[4] = { 256, 1024, 4096, 64 << 10 };
	static unsigned seq;
	struct settings *s = &H.s;
	char err[SHM_ERR_LEN];
	memset(s, 0, sizeof(*s));
	snprintf(s->instance, sizeof(s->instance), "fuzz-hs.%d", (int)getpid());
	snprintf(s->listen, sizeof(s->listen), "unix");
	snprintf(s->udp_listen, sizeof(s->udp_listen), "off");
	snprintf(s->auth_mode, sizeof(s->auth_mode), "%s", (cfg & 2) ? "open" : "keys");
	snprintf(s->filter_mode, sizeof(s->filter_mode), "off");
	s->workers = 1;
	s->max_connections = MAXC;
	s->max_frame = max_frames[(cfg >> 2) & 3];
	s->require_mac = cfg & 1;
	s->ndjson = !(cfg & 2) || (cfg & 16);   /* keys mode: refused either way */
	s->ring_bytes = 32 << 10;
	while (s->max_frame + 4096 > s->ring_bytes / 4)
		s->ring_bytes *= 2;
	s->devices = NDEV_SLOTS;
	s->ban_after = 10;
	s->ban_window_ms = 10000;
	s->ban_ms = 0;            /* filter.c's ban table is process-wide: off */
	s->ntopics = 2;
	snprintf(s->topics[0].name, sizeof(s->topics[0].name), "telemetry");
	s->topics[0].id = TOPIC_TELEMETRY;
	snprintf(s->topics[1].name, sizeof(s->topics[1].name), "logs");
	s->topics[1].id = TOPIC_LOGS;
	H.keys_mode = !(cfg & 2);

	rng_state = 0x6d692d66757a7aull;   /* every input sees the same nonces */

	/* the shm region, gone from /dev/shm at once: nothing to clean up later */
	shm_unlink_instance(s->instance);
	struct shm_geom g = { .nrings = 1, .ndevices = NDEV_SLOTS, .ring_bytes = s->ring_bytes };
	int r = shm_open_region(s->instance, &g, 1, &H.reg, err);
	if (r < 0)
		fprintf(stderr, "fuzz_handshake: %s\n", err);
	CHECK(r == 0);
	shm_unlink_instance(s->instance);
	H.reg.ctl->ready = 1;

	/* the registry (built fresh: a reload could change it) */
	H.keys = NULL;
	if (H.keys_mode) {
		CHECK(keys_new(&H.keys) == 0);
		for (size_t i = 0; i < NSPECS; i++) {
			const struct dev_spec *d = &specs[i];
			CHECK(keys_add(H.keys, d->id, d->topics, d->has_fpr ? d->fpr : NULL, d->key, err, sizeof(err)) == 0);
			if (!d->enabled)
				CHECK(keys_set_enabled(H.keys, d->id, 0) == 0);
			if (d->require != KEYS_REQ_NONE)
				CHECK(keys_set_require(H.keys, d->id, d->require) == 0);
		}
		CHECK(keys_resolve_topics(H.keys, topic_lookup, s, "fuzz", err, sizeof(err)) == 0);
	}

	/* the worker, as main.c and worker.c's worker_run() / setup() make it */
	struct worker *w = &H.w;
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->keys = H.keys;
	w->keys_mode = H.keys_mode;
	w->ctl = H.reg.ctl;
	w->ctr = shm_ctr(w->ctl, STAGE_INGESTD);
	w->ring_id = 0;
	w->lfd = w->ep = w->efd = w->udp_fd = -1;
	w->max_rec = rec_size(MI_DEVID_MAX, (uint32_t)s->max_frame);
	ring_prod_attach(&w->ring, shm_ring_hdr(w->ctl, w->ring_id));
	w->published = w->ring.head;
	w->nconns_max_fd = MAX_FD;
	w->conns = calloc(MAX_FD, sizeof(*w->conns));
	w->by_slot = calloc(w->ctl->ndevices, sizeof(*w->by_slot));
	w->rbuf = H.srv_rbuf;        /* kept across inputs: see finish_input */
	w->open_buf = w->keys_mode ? malloc(s->max_frame) : NULL;
	w->pool = pool_new();
	CHECK(w->conns && w->by_slot && w->pool && (!w->keys_mode || w->open_buf));

	/* an AF_UNIX listener (abstract name) where listen_on() binds TCP */
	w->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(w->lfd >= 0);
	H.lname[0] = 0;
	int nl = snprintf(H.lname + 1, sizeof(H.lname) - 1, "mi-fuzz-hs.%d.%u", (int)getpid(), seq++);
	H.lname_len = (socklen_t)(1 + nl);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, H.lname, H.lname_len);
	CHECK(bind(w->lfd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + H.lname_len)) == 0);
	CHECK(listen(w->lfd, 64) == 0);
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };
	struct epoll_event ev2 = { .events = EPOLLIN, .data.u64 = TAG_EVENT };
	CHECK(w->ep >= 0 && w->efd >= 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) == 0 &&
	      epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev2) == 0);

	H.nmodels = 0;
	for (int i = 0; i < MAXC; i++)
		H.cur[i] = -1;
	H.ring_pos = w->ring.head;
	memset(H.last_seq, 0, sizeof(H.last_seq));
	H.cpool = pool_new();
	CHECK(H.cpool);
}

HARNESS static void finish_input(void)
{
	struct worker *w = &H.w;
	pump();
	/* the clients go, then the server closes what is left, as teardown() */
	for (int i = 0; i < H.nmodels; i++)
		model_close(&H.m[i]);
	pump();
	close_all(w);
	w->ready_head = NULL;
	CHECK(w->nconns == 0 && !w->ack_head);
	for (uint32_t i = 0; i < w->ctl->ndevices; i++)
		CHECK(!w->by_slot[i]);
	struct pool_stats ps;
	pool_stats(w->pool, &ps);
	CHECK(ps.in_use == 0 && ps.bytes_in_use == 0);   /* decoder and output buffers all back */
	w->rbuf = NULL;       /* ours; NULL also skips ack_stop (no notifier thread) */
	teardown(w);          /* closes lfd, ep, efd; frees conns, by_slot, open_buf, pool */

	for (int i = 0; i < H.nmodels; i++) {
		struct model *m = &H.m[i];
		mi_dec_reset(&m->txdec);
		mi_dec_reset(&m->rxdec);
		free(m->txq);
		free(m->hellos);
		free(m->ents);
	}
	pool_stats(H.cpool, &ps);
	CHECK(ps.in_use == 0);
	pool_free(H.cpool);
	keys_free(H.keys);
	H.keys = NULL;
	shm_close_region(&H.reg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	randombytes_set_implementation(&rng_impl);
	if (sodium_init() < 0)
		abort();
	log_open("fuzz_handshake", "-", LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < NSPECS; i++) {
		for (int j = 0; j < KEYS_KEY_LEN; j++)
			specs[i].key[j] = (uint8_t)(i * 64 + (size_t)j);
		for (int j = 0; j < KEYS_FPR_LEN; j++)
			specs[i].fpr[j] = (uint8_t)(0xf0 ^ (i * 16 + (size_t)j));
	}
	H.trace = getenv("FUZZ_HS_TRACE") != NULL;
	H.rbuf = malloc(65536);
	H.srv_rbuf = malloc(READ_MAX);
	if (!H.rbuf || !H.srv_rbuf)
		abort();
	return 0;
}

static const char *const op_names[8] = { "SEND", "HELLO", "AUTH", "DATA", "FRAME", "DURABLE", "CLOSE", "MUTE" };

HARNESS int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct in in = { data + 1, size - 1 };
	setup_input(data[0]);
	if (H.trace)
		fprintf(stderr, "config: %s mode, max_frame %llu, require_mac %d, ndjson %d, ring %llu\n",
			H.keys_mode ? "keys" : "open", (unsigned long long)H.s.max_frame, H.s.require_mac, H.s.ndjson,
			(unsigned long long)H.s.ring_bytes);
	for (int nops = 0; in.n && nops < MAXOPS; nops++) {
		uint8_t op = in_u8(&in);
		int split = (op & 0x80) ? in_u8(&in) : 0;
		int code = op & 15, hold = op & 0x40;
		if (H.trace)
			fprintf(stderr, "op %d: %s on conn index %d%s%s\n", nops, op_names[code < 8 ? code : 0],
				(op >> 4) & 3, hold ? ", hold" : "", split ? ", split" : "");
		if (code == 5) {
			in_u8(&in);
			op_durable();
			pump();
			continue;
		}
		struct model *m = conn_for((op >> 4) & 3);
		if (!m) {
			break;
		}
		switch (code) {
		case 1: op_hello(m, &in, split); break;
		case 2: op_auth(m, &in, split); break;
		case 3: op_data(m, &in, split); break;
		case 4: op_frame(m, &in, split); break;
		case 6: {
			uint8_t how = in_u8(&in);
			flush_tx(m);
			if ((how & 1) && m->cli >= 0) {
				shutdown(m->cli, SHUT_WR);
				m->wr_closed = 1;
			} else {
				model_close(m);
			}
			break;
		}
		case 7:
			if (in_u8(&in) & 1) {
				m->muted = 0;
			} else {
				m->muted = m->ever_muted = 1;
				if (server_alive(m)) {
					int sz = 4096;
					setsockopt(m->sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
				}
			}
			break;
		default: {
			uint16_t n = in_u16(&in);
			if (n > in.n)
				n = (uint16_t)in.n;
			tx(m, in.p, n);
			in.p += n;
			in.n -= n;
			break;
		}
		}
		if (!hold)
			pump();
	}
	finish_input();
	return 0;
}
