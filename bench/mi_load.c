/* mi-load — load generator for wire protocol v1.
 *
 * One thread, one epoll, C non-blocking connections, each one device
 * (prefix + index).  Every connection pipelines DATA frames up to its window
 * and writes each batch with one write(); latency of a frame = ACK receive
 * time - time the frame was created for writing, recorded for every seq an
 * ACK covers.  Nothing is allocated per frame:
 *   - all frames carry the same payload (its CRC is computed once) and differ
 *     in seq and ts_ns, so a frame is rebuilt from its seq whenever it must be
 *     (re)written: no copy of unacked frames is kept, only their send times
 *     (one u64 per window slot);
 *   - a partial write is remembered as (seq, byte offset) for the same reason.
 * The rate limit is a token bucket refilled every loop and the loop wakes at
 * least every millisecond while it waits for tokens, so the offered load is
 * smooth at the millisecond scale.
 *
 * Keys mode (--keys-file): connection i is device <prefix><i> of the registry
 * and runs HELLO -> CHALLENGE -> AUTH -> WELCOME, checking the server's
 * proof.  --mac appends the per-frame MAC, --seal seals every payload
 * (docs/PROTOCOL.md), both with the connection's session key; since frames
 * are rebuilt from their seq, a frame resent after a reconnect is MACed or
 * sealed for the new session, still without any copy.  A frame rebuilt to
 * finish a partial write gets the ts_ns of the write that began it, so its
 * bytes (MAC or tag included) are those already half sent.
 *
 * --premade N: once every connection is welcomed, each builds its next N
 * frames and the clock starts; a write then takes the bytes straight from
 * that array.  A session lost after that drops its frames (they are the old
 * session's) and the connection builds live from then on, counted as
 * premade_dropped.  This takes the client's per-frame work (MAC, seal,
 * header, CRC) out of the measurement, as when devices run on their own
 * CPUs and not on the server's two cores.
 *
 * --handshakes: no DATA; every connection loops connect, HELLO, [CHALLENGE,
 * AUTH,] WELCOME, BYE, wait for the server's close, and again; reported as
 * handshakes/s and handshake latency (connect() to WELCOME).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/mi_client.h"
#include "common/cli.h"
#include "common/frame.h"
#include "common/keys.h"
#include "common/pool.h"

/* exit status; bad usage is CLI_EX_USAGE (2), as for every program */
#define EX_CANNOT_RUN 1

/* ---- latency histogram: log-linear, 128 sub-buckets per power of two ----
 * Values are ns.  Below 2^7 a bucket is 1 ns wide; above, a bucket spans
 * 1/128 of its power of two (< 0.8 % relative error).  2^35 ns (34 s) caps
 * it, which covers the 1 us .. 10 s range asked of it. */
#define H_SUB_BITS 7
#define H_SUB (1u << H_SUB_BITS)
#define H_MAX_BITS 35
#define H_BUCKETS ((H_MAX_BITS - H_SUB_BITS + 1) * H_SUB)

struct hist {
	uint64_t n[H_BUCKETS];
	uint64_t count, max;
};

static unsigned h_index(uint64_t v)
{
	if (v >= (1ull << H_MAX_BITS))
		v = (1ull << H_MAX_BITS) - 1;
	if (v < H_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - H_SUB_BITS;
	return (shift + 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

/* highest value that falls in bucket i */
static uint64_t h_value(unsigned i)
{
	if (i < H_SUB)
		return i;
	unsigned shift = i / H_SUB - 1;
	uint64_t lo = (uint64_t)(H_SUB + i % H_SUB) << shift;
	return lo + ((1ull << shift) - 1);
}

static void h_record(struct hist *h, uint64_t v)
{
	h->n[h_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

static uint64_t h_quantile(const struct hist *h, double q)
{
	if (!h->count)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < H_BUCKETS; i++) {
		seen += h->n[i];
		if (seen >= want) {
			uint64_t v = h_value(i);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

/* ---- connections ---- */

/* C_AUTH: keys mode, AUTH sent; C_BYE: --handshakes, BYE sent, waiting for
 * the server to close */
enum cstate { C_DOWN, C_CONNECTING, C_HELLO, C_AUTH, C_UP, C_BYE };

struct conn {
	int fd;
	uint8_t state;
	uint8_t queued;     /* on the ready queue */
	uint8_t blocked;    /* waiting for EPOLLOUT */
	uint8_t ever_up;
	uint32_t idx;
	uint32_t woff;      /* bytes of frame wseq already written */
	uint64_t next;      /* next seq to create */
	uint64_t wseq;      /* first seq not fully written */
	uint64_t acked;     /* highest seq acked */
	uint64_t deadline;  /* C_DOWN: retry at; C_CONNECTING/C_HELLO/C_AUTH/C_BYE: give up at */
	uint64_t rx_ns;     /* C_UP: last ACK, or when the ack wait began */
	uint64_t wts;       /* ts_ns of the frames of the write that left woff > 0 */
	uint64_t hs_ns;     /* when connect() was called: handshake latency */
	uint32_t backoff_ms;
	struct mi_decoder dec;
	/* keys mode */
	const struct keys_device *dev;
	uint8_t cnonce[MI_NONCE_LEN], snonce[MI_NONCE_LEN];
	uint8_t sess[32];   /* session key, for --mac / --seal */
	/* --premade: frames made_first .. made_first + o.premade - 1, built once */
	uint8_t *made;
	uint64_t made_first;
};

struct opts {
	const char *host, *prefix, *keys_file;
	uint16_t port;
	uint32_t conns, window, size;
	uint64_t rate;
	double duration;
	uint64_t premade;   /* frames made per connection before the clock starts; 0: live */
	uint32_t topics;    /* connection i sends on topic 1 + i % topics; 0: topic 0 */
	int json, mac, seal, handshakes;
	int json_payload;   /* payloads are a JSON object of three numbers, padded */
	uint64_t ts_step;   /* device time of seq S: TS_BASE + S * ts_step; 0: the send time */
};

#define TS_BASE 1767225600000000000ull   /* 2026-01-01T00:00:00Z */
#define JSON_PAYLOAD_MIN 48

static struct opts o = { .host = "127.0.0.1", .port = 7400, .conns = 1, .window = 64,
			 .size = 100, .duration = 10, .prefix = "load-" };
static struct conn *conns;
static uint64_t *sent_ns;      /* conns * window send times; 0: slot resolved by NACK */
static uint32_t *rq;           /* ready queue (ring of conn indices) */
static uint32_t rq_head, rq_len;
static int ep;
static pool_t *pool;
static uint8_t *scratch, *payload;
static size_t scratch_cap;
static uint32_t frame_len, payload_crc;
static uint32_t auth_len;      /* 16 with --mac or --seal: what the payload grows by */
static keys_t *keys;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static struct hist hist, hs_hist;
static uint64_t now, real_now, t_end;
static int stopping;
static int started = 1;        /* 0 while --premade waits for every connection's frames */
static uint64_t t_drain;       /* give up waiting for ACKs then */

static struct {
	uint64_t sent, acked, resent, nacks, outstanding;
	uint64_t err_connect, err_io, err_proto, err_refused, err_timeout;
	uint64_t writes, last_ack_ns;
	uint64_t handshakes, hs_in_window;   /* WELCOMEs; those before the end of -d */
	uint64_t made_dropped, exhausted;    /* --premade: frames of a lost session; runs out */
	unsigned last_nack_code;
	char last_nack[128];
	unsigned logged;
} st;

/* The machine's CPU time over the measured window (/proc/stat, all CPUs):
 * busy = user + nice + system + irq + softirq.  Under CPU saturation the
 * frames/s of a run follow the busy time a frame costs, and that (unlike
 * frames/s) does not move with the steal a virtual machine suffers. */
struct cpu_ticks { uint64_t busy, idle, steal; };
static struct cpu_ticks cpu0, cpu1;   /* when the clock started; at the end */

static int read_cpu_ticks(struct cpu_ticks *t)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -1;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return -1;
	t->busy = v[0] + v[1] + v[2] + v[5] + v[6];
	t->idle = v[3] + v[4];
	t->steal = v[7];
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3)))
static void conn_log(const struct conn *c, const char *fmt, ...)
{
	/* a dying server fails every connection at once: say it a few times only */
	if (++st.logged > 10) {
		if (st.logged == 11)
			fprintf(stderr, "mi-load: further connection errors are only counted\n");
		return;
	}
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "mi-load: %s:%u device %s%u: %s\n", o.host, o.port, o.prefix, c->idx, msg);
}

static uint64_t *slot(const struct conn *c, uint64_t seq)
{
	return &sent_ns[(size_t)c->idx * o.window + seq % o.window];
}

static void rq_push(struct conn *c)
{
	if (c->queued)
		return;
	c->queued = 1;
	rq[(rq_head + rq_len++) % o.conns] = c->idx;
}

static void conn_down(struct conn *c, uint64_t *counter)
{
	if (counter)
		(*counter)++;
	if (c->fd >= 0)
		close(c->fd);   /* also leaves the epoll set */
	c->fd = -1;
	c->state = C_DOWN;
	c->blocked = 0;
	mi_dec_reset(&c->dec);
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 50;
	if (c->backoff_ms > 1000)
		c->backoff_ms = 1000;
	c->deadline = now + (uint64_t)c->backoff_ms * 1000000ull;
}

static void conn_start(struct conn *c)
{
	int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_log(c, "socket: %s", strerror(errno));
		conn_down(c, &st.err_connect);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
		conn_log(c, "connect: %s", strerror(errno));
		conn_down(c, &st.err_connect);
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = c->idx };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		conn_log(c, "epoll_ctl: %s", strerror(errno));
		conn_down(c, &st.err_connect);
		return;
	}
	c->state = C_CONNECTING;
	c->deadline = now + 5000000000ull;
	c->hs_ns = now;
}

static void want_out(struct conn *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = c->idx };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->blocked = (uint8_t)on;
}

static void send_hello(struct conn *c)
{
	uint8_t pl[1 + MI_DEVID_MAX + MI_NONCE_LEN + MI_FPR_LEN], fr[MI_HDR_LEN + sizeof(pl)];
	int n = snprintf((char *)pl + 1, MI_DEVID_MAX + 1, "%s%u", o.prefix, c->idx);
	pl[0] = (uint8_t)n;
	/* the client nonce enters the keys-mode proofs: fresh for every HELLO */
	if (getrandom(c->cnonce, MI_NONCE_LEN, GRND_NONBLOCK) != MI_NONCE_LEN)
		randombytes_buf(c->cnonce, MI_NONCE_LEN);
	memcpy(pl + 1 + n, c->cnonce, MI_NONCE_LEN);
	uint32_t plen = (uint32_t)(1 + n + MI_NONCE_LEN);
	uint16_t flags = 0;
	if (c->dev && c->dev->has_fpr) {   /* the registry's fingerprint, as the device sends it */
		memcpy(pl + plen, c->dev->fpr, MI_FPR_LEN);
		plen += MI_FPR_LEN;
		flags = MI_F_FPR;
	}
	size_t len = mi_frame_build(fr, sizeof(fr), MI_HELLO, flags, 0, 0, 0, pl, plen);
	/* a fresh socket's buffer always takes 150 bytes */
	if (write(c->fd, fr, len) != (ssize_t)len) {
		conn_log(c, "write HELLO: %s", strerror(errno));
		conn_down(c, &st.err_io);
		return;
	}
	c->state = C_HELLO;
}

/* keyed BLAKE2b-256 (device key) over label || Ns || Nc [|| id || fpr]
 * (docs/PROTOCOL.md, Handshake (keys mode)) */
static void keyed_hash(const struct conn *c, uint8_t out[32], const char *label, int with_id)
{
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, c->dev->key, KEYS_KEY_LEN, 32);
	crypto_generichash_update(&hs, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&hs, c->snonce, MI_NONCE_LEN);
	crypto_generichash_update(&hs, c->cnonce, MI_NONCE_LEN);
	if (with_id) {
		crypto_generichash_update(&hs, (const uint8_t *)c->dev->id, c->dev->id_len);
		if (c->dev->has_fpr)
			crypto_generichash_update(&hs, c->dev->fpr, MI_FPR_LEN);
	}
	crypto_generichash_final(&hs, out, 32);
	sodium_memzero(&hs, sizeof(hs));
}

/* CHALLENGE received: answer with AUTH.  0, or -1 with the connection down. */
static int send_auth(struct conn *c)
{
	uint8_t proof[MI_PROOF_LEN], fr[MI_HDR_LEN + MI_PROOF_LEN];
	keyed_hash(c, proof, "MI1-auth", 1);
	mi_frame_build(fr, sizeof(fr), MI_AUTH, 0, 0, 0, 0, proof, MI_PROOF_LEN);
	/* nothing else was written since the HELLO: the socket buffer takes it */
	if (write(c->fd, fr, sizeof(fr)) != (ssize_t)sizeof(fr)) {
		conn_log(c, "write AUTH: %s", strerror(errno));
		conn_down(c, &st.err_io);
		return -1;
	}
	c->state = C_AUTH;
	return 0;
}

/* --handshakes: WELCOME received; BYE, then the server closes.  0 or -1
 * with the connection down. */
static int send_bye(struct conn *c)
{
	uint8_t fr[MI_HDR_LEN];
	mi_frame_build(fr, sizeof(fr), MI_BYE, 0, 0, 0, 0, NULL, 0);
	if (write(c->fd, fr, sizeof(fr)) != (ssize_t)sizeof(fr)) {
		conn_log(c, "write BYE: %s", strerror(errno));
		conn_down(c, &st.err_io);
		return -1;
	}
	c->state = C_BYE;
	c->deadline = now + 5000000000ull;
	return 0;
}

/* --handshakes: the server closed after our BYE; the next handshake starts
 * at once (no backoff: nothing failed). */
static void hs_again(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->state = C_DOWN;
	c->blocked = 0;
	mi_dec_reset(&c->dec);
	c->deadline = now;
	if (!stopping)
		conn_start(c);
}

/* Frames (acked, upto] are done; record latency of those not NACKed. */
static void ack_upto(struct conn *c, uint64_t upto)
{
	for (uint64_t s = c->acked + 1; s <= upto; s++) {
		uint64_t *t = slot(c, s);
		if (*t) {
			h_record(&hist, now - *t);
			st.acked++;
			st.outstanding--;
		}
	}
	c->acked = upto;
	c->rx_ns = st.last_ack_ns = now;
}

/* Builds frames seq .. seq + n - 1 of c's session at p, all with ts_ns ts. */
static void build_frames(const struct conn *c, uint8_t *p, uint64_t seq, uint64_t n, uint64_t ts)
{
	uint16_t topic = o.topics ? (uint16_t)(1 + c->idx % o.topics) : 0;
	struct mi_hdr h = { .version = MI_VERSION, .type = MI_DATA, .flags = o.mac ? MI_F_MAC : 0, .topic = topic,
			    .len = o.size + auth_len, .pcrc = payload_crc, .ts_ns = ts };
	for (uint64_t i = 0; i < n; i++, p += frame_len) {
		h.seq = seq + i;
		if (o.ts_step)
			h.ts_ns = TS_BASE + h.seq * o.ts_step;
		if (o.seal) {
			mic_seal_frame(p, frame_len, c->sess, c->snonce, topic, h.seq, h.ts_ns, payload, o.size);
			continue;
		}
		memcpy(p + MI_HDR_LEN, payload, o.size);
		if (o.mac) {
			uint8_t *mac = p + MI_HDR_LEN + o.size;
			mi_frame_mac(mac, c->sess, &h, payload, o.size);
			h.pcrc = mi_crc32_update(payload_crc, mac, MI_MAC_LEN);
		}
		mi_hdr_encode(&h, p);
	}
}

/* --premade: the session's frames from its first fresh seq on, made before
 * the clock starts, so the run measures the server and not this process's
 * MAC or seal work (devices do theirs on their own CPUs).  A session lost
 * later drops them: its successor has another key. */
static int make_frames(struct conn *c)
{
	c->made = malloc((size_t)(o.premade * frame_len));
	if (!c->made) {
		fprintf(stderr, "mi-load: out of memory for --premade %" PRIu64 " x %u connections "
			"(%u bytes a frame)\n", o.premade, o.conns, frame_len);
		return -1;
	}
	c->made_first = c->next;
	build_frames(c, c->made, c->made_first, o.premade, wall_ns());
	return 0;
}

static void on_welcome(struct conn *c, uint64_t w)
{
	c->state = C_UP;
	c->backoff_ms = 0;
	c->rx_ns = now;
	if (!c->ever_up) {
		c->ever_up = 1;
		c->next = c->wseq = w + 1;
		c->acked = w;
	} else {
		if (c->made) {
			st.made_dropped += c->made_first + o.premade - c->next;
			free(c->made);
			c->made = NULL;
		}
		if (!started)
			return;
		uint64_t top = c->next - 1;
		if (w > c->acked)
			ack_upto(c, w < top ? w : top);
		if (w >= c->next)   /* someone else advanced the device: follow */
			c->next = w + 1;
		c->acked = w > c->acked ? w : c->acked;
		c->wseq = c->acked + 1;
		c->woff = 0;
		if (c->next > c->wseq)
			st.resent += c->next - c->wseq;
	}
	if (started)
		rq_push(c);   /* else when the clock starts (--premade) */
}

/* 0, -1 protocol error, -2 server said BYE, -3 the connection is already
 * down (counted) */
static int on_frame(struct conn *c, const struct mi_frame *f)
{
	if (c->state == C_BYE)
		return 0;   /* the server closes: whatever comes first is not needed */
	switch (f->h.type) {
	case MI_WELCOME:
		if ((c->state != C_HELLO && c->state != C_AUTH) || f->h.len < 4)
			break;
		if (keys) {
			uint8_t want[MI_PROOF_LEN];
			if (c->state != C_AUTH) {
				fprintf(stderr, "mi-load: %s:%u: --keys-file given, but the server answered "
					"HELLO with WELCOME, not CHALLENGE: it is in open mode\n", o.host, o.port);
				exit(EX_CANNOT_RUN);
			}
			if (f->h.len < 4 + MI_PROOF_LEN)
				break;
			keyed_hash(c, want, "MI1-srv", 1);
			if (sodium_memcmp(want, f->payload + 4, MI_PROOF_LEN) != 0) {
				fprintf(stderr, "mi-load: %s:%u device %s: WELCOME carries a wrong server "
					"proof: the server does not hold this device's key\n", o.host, o.port,
					c->dev->id);
				exit(EX_CANNOT_RUN);
			}
			keyed_hash(c, c->sess, "MI1-sess", 0);
		}
		if (!o.handshakes && mi_get32(f->payload) < o.size + auth_len) {
			fprintf(stderr, "mi-load: %s:%u: server's max frame %u is below --size %u%s\n",
				o.host, o.port, mi_get32(f->payload), o.size,
				auth_len ? " + 16 (MAC or seal tag)" : "");
			exit(EX_CANNOT_RUN);
		}
		h_record(&hs_hist, now - c->hs_ns);
		st.handshakes++;
		if (now < t_end)
			st.hs_in_window++;
		if (o.handshakes)
			return send_bye(c) < 0 ? -3 : 0;
		on_welcome(c, f->h.seq);
		return 0;
	case MI_CHALLENGE:
		if (!keys) {
			fprintf(stderr, "mi-load: %s:%u: server wants keys-mode authentication: give "
				"--keys-file\n", o.host, o.port);
			exit(EX_CANNOT_RUN);
		}
		if (c->state != C_HELLO || f->h.len != MI_NONCE_LEN)
			break;
		memcpy(c->snonce, f->payload, MI_NONCE_LEN);
		return send_auth(c) < 0 ? -3 : 0;
	case MI_ACK:
		if (c->state != C_UP)
			break;
		if (f->h.seq > c->acked) {
			/* only what is fully written can be acknowledged */
			uint64_t top = c->wseq - 1;
			ack_upto(c, f->h.seq < top ? f->h.seq : top);
			rq_push(c);
		}
		return 0;
	case MI_NACK: {
		unsigned code = f->h.len >= 2 ? mi_get16(f->payload) : 0;
		size_t rl = f->h.len > 2 ? f->h.len - 2 : 0;
		if (rl >= sizeof(st.last_nack))
			rl = sizeof(st.last_nack) - 1;
		memcpy(st.last_nack, f->payload + 2, rl);
		st.last_nack[rl] = 0;
		st.last_nack_code = code;
		if (c->state == C_HELLO || c->state == C_AUTH) {
			if (code == MI_NACK_AUTH_FAILED) {
				/* every retry would fail the same way (and earn a ban) */
				fprintf(stderr, "mi-load: %s:%u device %s%u: authentication failed (NACK 5 "
					"%s): is --keys-file the server's keys file, with the device enabled?\n",
					o.host, o.port, o.prefix, c->idx, st.last_nack);
				exit(EX_CANNOT_RUN);
			}
			conn_log(c, "HELLO refused: %u %s (%s)", code, mi_nack_name(code), st.last_nack);
			return -1;
		}
		uint64_t s = f->h.seq;
		st.nacks++;
		if (s > c->acked && s < c->next && *slot(c, s)) {
			*slot(c, s) = 0;
			st.outstanding--;
		}
		return 0;
	}
	case MI_PING:   /* a connection that streams is not idle: PONG not needed */
	case MI_PONG:
		return 0;
	case MI_BYE:
		conn_log(c, "server said BYE");
		return -2;
	}
	conn_log(c, "unexpected %s frame", mi_type_name(f->h.type));
	return -1;
}

static void on_readable(struct conn *c)
{
	static uint8_t rbuf[64 << 10];
	for (;;) {
		ssize_t r = read(c->fd, rbuf, sizeof(rbuf));
		if (r == 0 && c->state == C_BYE) {
			hs_again(c);
			return;
		}
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_log(c, "%s", r == 0 ? "connection closed by the server" : strerror(errno));
			conn_down(c, &st.err_io);
			return;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		size_t off = 0;
		while (off < (size_t)r) {
			struct mi_frame f;
			size_t used;
			int d = mi_dec_next(&c->dec, rbuf + off, (size_t)r - off, &used, &f);
			off += used;
			int e = 0;
			if (d < 0) {
				conn_log(c, "framing error from the server: %s", mi_frame_strerror(d));
				e = -1;
			} else if (d == MI_DEC_TOO_LARGE) {
				conn_log(c, "server sent a %u-byte frame", f.h.len);
				e = -1;
			} else if (d == MI_DEC_FRAME) {
				e = on_frame(c, &f);
			}
			if (e == -3)
				return;
			if (e < 0) {
				int hs = c->state == C_HELLO || c->state == C_AUTH;
				conn_down(c, e == -2 ? &st.err_io : hs ? &st.err_refused : &st.err_proto);
				return;
			}
		}
		if ((size_t)r < sizeof(rbuf))
			return;
	}
}

static void on_connected(struct conn *c)
{
	int err = 0;
	socklen_t l = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		err = errno;
	if (err) {
		conn_log(c, "connect: %s", strerror(err));
		conn_down(c, &st.err_connect);
		return;
	}
	want_out(c, 0);
	send_hello(c);
}

/* Writes (re)sends and up to `fresh` new frames in one write().  Returns the
 * new frames taken. */
static uint64_t conn_fill(struct conn *c, uint64_t fresh)
{
	uint64_t room = o.window - (c->next - 1 - c->acked);
	uint64_t max_batch = scratch_cap / frame_len;
	uint64_t old = c->next - c->wseq;   /* created, not fully written */
	if (old > max_batch)
		old = max_batch;
	if (fresh > room)
		fresh = room;
	if (fresh > max_batch - old)
		fresh = max_batch - old;
	if (c->made) {
		uint64_t left = c->made_first + o.premade - c->next;
		if (fresh > left)
			fresh = left;
		if (left == 0 && !stopping) {
			/* the run ends here: live frames would measure this process */
			st.exhausted++;
			stopping = 1;
			t_end = now;
			t_drain = now + 5000000000ull;
		}
	}
	if (old + fresh == 0)
		return 0;
	if (old < c->next - c->wseq)
		fresh = 0;   /* finish the backlog first */
	if (c->acked + 1 == c->wseq && c->woff == 0)
		c->rx_ns = now;   /* nothing was in flight: the ack wait starts now */
	for (uint64_t i = 0; i < fresh; i++) {
		*slot(c, c->next + i) = now;
		st.outstanding++;
	}
	c->next += fresh;
	st.sent += fresh;
	uint64_t n = old + fresh;
	size_t total = n * frame_len - c->woff;
	uint8_t *out;
	uint64_t ts = 0;
	if (c->made) {
		out = c->made + (c->wseq - c->made_first) * frame_len;
	} else {
		/* a frame half written must come out with the same bytes: its ts_ns
		 * (and so its MAC or tag) is that of the write that began it */
		ts = c->woff ? c->wts : real_now;
		build_frames(c, scratch, c->wseq, n, ts);
		out = scratch;
	}
	ssize_t w = write(c->fd, out + c->woff, total);
	if (w < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			want_out(c, 1);
			return fresh;
		}
		conn_log(c, "write: %s", strerror(errno));
		conn_down(c, &st.err_io);
		return fresh;
	}
	st.writes++;
	uint64_t done = c->woff + (uint64_t)w;
	c->wseq += done / frame_len;
	c->woff = (uint32_t)(done % frame_len);
	if (c->woff)
		c->wts = ts;
	if ((size_t)w < total)
		want_out(c, 1);
	return fresh;
}

static double tokens;

/* Serves the ready queue round-robin while tokens last.  Returns 1 when a
 * connection waits for tokens (the loop should wake in a millisecond). */
static int fill_pass(void)
{
	uint32_t n = rq_len;
	for (uint32_t k = 0; k < n; k++) {
		struct conn *c = &conns[rq[rq_head]];
		uint64_t fresh = stopping ? 0 : (uint64_t)tokens;
		int live = c->state == C_UP && !c->blocked;
		/* out of tokens: leave the queue as it is so the next tick starts
		 * with this connection (rotating it would favour one connection) */
		if (live && fresh == 0 && c->next == c->wseq && !stopping &&
		    c->next - 1 - c->acked < o.window)
			return 1;
		rq_head = (rq_head + 1) % o.conns;
		rq_len--;
		c->queued = 0;
		if (!live || (fresh == 0 && c->next == c->wseq))
			continue;   /* a state change or an ACK requeues it */
		uint64_t took = conn_fill(c, fresh);
		if (o.rate)
			tokens -= (double)took;
		if (c->state == C_UP && !c->blocked && c->next - 1 - c->acked < o.window && !stopping)
			rq_push(c);
	}
	return 0;
}

#define ACK_TIMEOUT_NS 10000000000ull

static void housekeeping(void)
{
	for (uint32_t i = 0; i < o.conns; i++) {
		struct conn *c = &conns[i];
		if (c->state == C_DOWN && now >= c->deadline &&
		    !(stopping && (o.handshakes || c->next - 1 == c->acked)))
			conn_start(c);
		else if ((c->state == C_CONNECTING || c->state == C_HELLO || c->state == C_AUTH ||
			  c->state == C_BYE) && now >= c->deadline) {
			conn_log(c, c->state == C_HELLO || c->state == C_AUTH ? "no WELCOME within 5 s"
				    : c->state == C_BYE ? "server did not close within 5 s of BYE"
				    : "connect: timed out");
			conn_down(c, &st.err_connect);
		} else if (c->state == C_UP && c->wseq - 1 > c->acked &&
			   now - c->rx_ns >= ACK_TIMEOUT_NS) {
			/* a silent server must not freeze the run: reconnect and resend */
			conn_log(c, "no ACK for %llu s with %llu frames in flight",
				 ACK_TIMEOUT_NS / 1000000000ull, (unsigned long long)(c->wseq - 1 - c->acked));
			conn_down(c, &st.err_timeout);
		}
	}
}

static const char usage[] =
	"usage: mi-load [-h HOST] [-p PORT] [-c CONNECTIONS] [-w WINDOW] [-s SIZE] [-r RATE]\n"
	"               [-d SECONDS] [--devices-prefix P] [--json]\n"
	"               [--keys-file FILE [--mac | --seal]] [--handshakes] [--premade N]\n"
	"               [--topics N] [--json-payload] [--ts-step NS]\n"
	"\n"
	"  -h HOST    server (default 127.0.0.1)        -p PORT   (default 7400)\n"
	"  -c N       connections, one device each (default 1)\n"
	"  -w N       frames in flight per connection (default 64)\n"
	"  -s BYTES   payload size (default 100)\n"
	"  -r N       total frames/s, 0 = unlimited (default 0)\n"
	"  -d SEC     sending time (default 10); then up to 5 s more for ACKs\n"
	"  --devices-prefix P   device ids are P0, P1, ... (default load-)\n"
	"  --topics N connection i sends on topic 1 + i % N (default 0: all on topic 0)\n"
	"  --json     one JSON object line on stdout instead of the text report\n"
	"  --json-payload  payloads are a JSON object, {\"temp\":21.5,\"hum\":40,\"volt\":3.31,\n"
	"             \"pad\":\"...\"} padded to -s BYTES (at least 48)\n"
	"  --ts-step NS  the device time of seq S is 2026-01-01T00:00:00Z + S x NS\n"
	"             (default: the time of sending), so a run lays out a long history\n"
	"  --keys-file FILE  keys mode: the device registry (mi-keys; mode 0600); each\n"
	"             connection's device P<i> must be there, enabled; HELLO, CHALLENGE,\n"
	"             AUTH, WELCOME with the server's proof checked\n"
	"  --mac      keys mode: every DATA frame ends with the per-frame MAC\n"
	"  --seal     keys mode: every DATA payload is sealed (XChaCha20-Poly1305)\n"
	"  --handshakes  no DATA: each connection loops connect, HELLO, [CHALLENGE,\n"
	"             AUTH,] WELCOME, BYE, server close, for -d seconds\n"
	"  --premade N  once every connection is welcomed, build each one's next N\n"
	"             frames (MAC, seal and all), then start the clock: the run\n"
	"             measures the server, not mi-load's per-frame work (real devices\n"
	"             MAC and seal on their own CPUs); it ends early when a connection\n"
	"             has sent all N (reported).  Unlimited rate only\n"
	"\n"
	"Reports acked frames/s, MB/s of payload, ACK latency p50/p99/p99.9/max\n"
	"(from a frame's write to the ACK covering it), NACKs and connection\n"
	"errors (connections are re-established and unacked frames resent); the\n"
	"handshakes done and their latency (connect() to WELCOME); with\n"
	"--handshakes, handshakes/s.  The CPU time mi-load itself used is reported\n"
	"too (client and server share the machine when run on one box).\n"
	"Exit status: 0 ran (even with errors), 1 cannot run (server unreachable\n"
	"is not that: it shows as connection errors; a refused key, a device\n"
	"missing from --keys-file or a server in the other mode is), 2 bad usage.\n";

static int num(const char *s, double max, double *ret)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0 || v > max) {
		fprintf(stderr, "mi-load: bad number '%s' (0..%.0f)\n", s, max);
		return -1;
	}
	*ret = v;
	return 0;
}

static int parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "devices-prefix", required_argument, 0, 'P' },
		{ "json", no_argument, 0, 'J' },
		{ "keys-file", required_argument, 0, 'K' },
		{ "mac", no_argument, 0, 'M' },
		{ "seal", no_argument, 0, 'E' },
		{ "handshakes", no_argument, 0, 'S' },
		{ "premade", required_argument, 0, 'F' },
		{ "topics", required_argument, 0, 'T' },
		{ "json-payload", no_argument, 0, 'Y' },
		{ "ts-step", required_argument, 0, 'Z' },
		{ "help", no_argument, 0, 'H' },
		{ 0, 0, 0, 0 },
	};
	int opt;
	double v;
	while ((opt = getopt_long(argc, argv, ":h:p:c:w:s:r:d:", lo, NULL)) != -1) {
		switch (opt) {
		case 'h': o.host = optarg; break;
		case 'P': o.prefix = optarg; break;
		case 'J': o.json = 1; break;
		case 'K': o.keys_file = optarg; break;
		case 'M': o.mac = 1; break;
		case 'E': o.seal = 1; break;
		case 'S': o.handshakes = 1; break;
		case 'F': if (num(optarg, 1e9, &v) < 0 || v < 1) return -1; o.premade = (uint64_t)v; break;
		case 'T': if (num(optarg, 65535, &v) < 0) return -1; o.topics = (uint32_t)v; break;
		case 'Y': o.json_payload = 1; break;
		case 'Z': if (num(optarg, 1e15, &v) < 0 || v < 1) return -1; o.ts_step = (uint64_t)v; break;
		case 'H': fputs(usage, stdout); exit(0);
		case 'p': if (num(optarg, 65535, &v) < 0 || v < 1) return -1; o.port = (uint16_t)v; break;
		case 'c': if (num(optarg, 1000000, &v) < 0 || v < 1) return -1; o.conns = (uint32_t)v; break;
		case 'w': if (num(optarg, 1 << 20, &v) < 0 || v < 1) return -1; o.window = (uint32_t)v; break;
		case 's': if (num(optarg, MI_MAX_FRAME_CAP, &v) < 0) return -1; o.size = (uint32_t)v; break;
		case 'r': if (num(optarg, 1e10, &v) < 0) return -1; o.rate = (uint64_t)v; break;
		case 'd': if (num(optarg, 1e6, &v) < 0 || v <= 0) return -1; o.duration = v; break;
		default: cli_bad_option("mi-load", opt, argv); return -1;
		}
	}
	if (optind < argc)
		return -1;
	if ((o.mac || o.seal) && !o.keys_file) {
		fprintf(stderr, "mi-load: %s needs --keys-file (keys mode)\n", o.seal ? "--seal" : "--mac");
		return -1;
	}
	if (o.mac && o.seal) {
		fprintf(stderr, "mi-load: --mac and --seal exclude each other: a sealed frame carries no MAC\n");
		return -1;
	}
	if (o.json_payload && o.size < JSON_PAYLOAD_MIN) {
		fprintf(stderr, "mi-load: --json-payload needs -s %d or more\n", JSON_PAYLOAD_MIN);
		return -1;
	}
	if (o.premade && (o.handshakes || o.rate)) {
		fprintf(stderr, "mi-load: --premade measures unlimited-rate DATA: not with %s\n",
			o.handshakes ? "--handshakes" : "-r");
		return -1;
	}
	if (o.handshakes && (o.mac || o.seal)) {
		fprintf(stderr, "mi-load: --handshakes sends no DATA: --mac and --seal do not apply\n");
		return -1;
	}
	char probe[MI_DEVID_MAX + 16];
	int n = snprintf(probe, sizeof(probe), "%s%u", o.prefix, o.conns - 1);
	if (n < 0 || !mi_devid_valid((uint8_t *)probe, (size_t)n)) {
		fprintf(stderr, "mi-load: device id '%s' is invalid (1..64 of [A-Za-z0-9._:-])\n", probe);
		return -1;
	}
	return 0;
}

static int setup(void)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	char port[8];
	snprintf(port, sizeof(port), "%u", o.port);
	int g = getaddrinfo(o.host, port, &hints, &ai);
	if (g) {
		fprintf(stderr, "mi-load: resolve %s:%u: %s\n", o.host, o.port, gai_strerror(g));
		return -1;
	}
	memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
	addr_len = ai->ai_addrlen;
	freeaddrinfo(ai);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.conns + 32) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)o.conns + 32 ? rl.rlim_max : (rlim_t)o.conns + 32;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)o.conns + 32)
			fprintf(stderr, "mi-load: only %llu file descriptors: some connections will fail\n",
				(unsigned long long)rl.rlim_cur);
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "mi-load: libsodium does not initialise\n");
		return -1;
	}
	auth_len = o.mac || o.seal ? MI_MAC_LEN : 0;
	if (o.size > MI_MAX_FRAME_CAP - auth_len) {
		fprintf(stderr, "mi-load: --size %u + 16 is above the 16 MiB frame cap\n", o.size);
		return -1;
	}
	frame_len = MI_HDR_LEN + o.size + auth_len;
	scratch_cap = (size_t)frame_len * 2 > (256u << 10) ? (size_t)frame_len * 2 : (256u << 10);
	conns = calloc(o.conns, sizeof(*conns));
	sent_ns = calloc((size_t)o.conns * o.window, sizeof(*sent_ns));
	rq = calloc(o.conns, sizeof(*rq));
	scratch = malloc(scratch_cap);
	payload = malloc(o.size ? o.size : 1);
	pool = pool_new();
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || !sent_ns || !rq || !scratch || !payload || !pool || ep < 0) {
		fprintf(stderr, "mi-load: out of memory for %u connections x %u window\n", o.conns, o.window);
		return -1;
	}
	for (uint32_t i = 0; i < o.size; i++)
		payload[i] = (uint8_t)('a' + i % 26);
	if (o.json_payload) {
		static const char head[] = "{\"temp\":21.5,\"hum\":40,\"volt\":3.31,\"pad\":\"";
		memcpy(payload, head, sizeof(head) - 1);
		memcpy(payload + o.size - 2, "\"}", 2);
	}
	payload_crc = mi_crc32(payload, o.size);
	for (uint32_t i = 0; i < o.conns; i++) {
		conns[i].idx = i;
		conns[i].fd = -1;
		mi_dec_init(&conns[i].dec, pool, MI_MAX_FRAME_DEFAULT);
	}
	if (o.keys_file) {
		char err[512], id[MI_DEVID_MAX + 16];
		int r = keys_load(o.keys_file, &keys, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "mi-load: --keys-file: %s\n", err[0] ? err : strerror(-r));
			return -1;
		}
		for (uint32_t i = 0; i < o.conns; i++) {
			int n = snprintf(id, sizeof(id), "%s%u", o.prefix, i);
			const struct keys_device *d = keys_find(keys, id, (size_t)n);
			if (!d || !d->enabled) {
				fprintf(stderr, "mi-load: --keys-file %s: %s '%s' (connection %u of %u is device "
					"%s<i>; add the devices with mi-keys, or change -c / --devices-prefix)\n",
					o.keys_file, d ? "device disabled:" : "no device", id, i, o.conns,
					o.prefix);
				return -1;
			}
			conns[i].dev = d;
		}
	}
	return 0;
}

/* the NACK reason as a JSON string body: no quotes, backslashes or controls */
static const char *json_safe(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = ' ';
	return s;
}

static void report(double elapsed)
{
	double fps = elapsed > 0 ? (double)st.acked / elapsed : 0;
	double mbs = fps * o.size / 1e6;
	double us = 1e3;
	uint64_t errors = st.err_connect + st.err_io + st.err_proto + st.err_refused + st.err_timeout;
	double hps = o.duration > 0 ? (double)st.hs_in_window / o.duration : 0;
	const char *fa = o.seal ? "sealed" : o.mac ? "mac" : "none";
	double hz = (double)sysconf(_SC_CLK_TCK);
	double busy = (double)(cpu1.busy - cpu0.busy) / hz;
	struct rusage ru;
	double cpu = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		      (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	if (o.json) {
		/* the original fields first, unchanged; the keys-mode ones after */
		printf("{\"host\":\"%s\",\"port\":%u,\"connections\":%u,\"window\":%u,\"size\":%u,"
		       "\"rate\":%" PRIu64 ",\"duration_s\":%.3f,\"elapsed_s\":%.3f,\"sent\":%" PRIu64
		       ",\"acked\":%" PRIu64 ",\"resent\":%" PRIu64 ",\"unacked\":%" PRIu64
		       ",\"frames_per_s\":%.1f,\"mb_per_s\":%.3f,\"wire_mb_per_s\":%.3f,"
		       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
		       "\"nacks\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"err_connect\":%" PRIu64
		       ",\"err_io\":%" PRIu64 ",\"err_proto\":%" PRIu64 ",\"err_refused\":%" PRIu64
		       ",\"err_timeout\":%" PRIu64 ",\"writes\":%" PRIu64 ",",
		       o.host, o.port, o.conns, o.window, o.size, o.rate, o.duration, elapsed, st.sent,
		       st.acked, st.resent, st.outstanding, fps, mbs, fps * frame_len / 1e6,
		       h_quantile(&hist, 0.5) / us, h_quantile(&hist, 0.99) / us,
		       h_quantile(&hist, 0.999) / us, hist.max / us, st.nacks, errors, st.err_connect,
		       st.err_io, st.err_proto, st.err_refused, st.err_timeout, st.writes);
		printf("\"scenario\":\"%s\",\"auth\":\"%s\",\"frame_auth\":\"%s\",\"frame_bytes\":%u,"
		       "\"handshakes\":%" PRIu64 ",\"handshakes_per_s\":%.1f,\"hs_p50_us\":%.1f,"
		       "\"hs_p99_us\":%.1f,\"hs_p999_us\":%.1f,\"hs_max_us\":%.1f,"
		       "\"last_nack_code\":%u,\"last_nack\":\"%s\",\"client_cpu_s\":%.3f,"
		       "\"premade\":%" PRIu64 ",\"premade_ran_out\":%s,\"premade_dropped\":%" PRIu64 ","
		       "\"machine_busy_s\":%.2f,\"machine_idle_s\":%.2f,\"machine_steal_s\":%.2f,"
		       "\"machine_busy_us_per_frame\":%.3f}\n",
		       o.handshakes ? "handshakes" : "frames", keys ? "keys" : "open", fa, frame_len,
		       st.handshakes, hps, h_quantile(&hs_hist, 0.5) / us, h_quantile(&hs_hist, 0.99) / us,
		       h_quantile(&hs_hist, 0.999) / us, hs_hist.max / us, st.last_nack_code,
		       json_safe(st.last_nack), cpu, o.premade, st.exhausted ? "true" : "false",
		       st.made_dropped, busy, (double)(cpu1.idle - cpu0.idle) / hz,
		       (double)(cpu1.steal - cpu0.steal) / hz, st.acked ? busy * 1e6 / (double)st.acked : 0);
		return;
	}
	if (o.handshakes) {
		printf("mi-load: %s:%u, %s mode handshakes, %u connections in parallel, %.1f s\n", o.host,
		       o.port, keys ? "keys" : "open", o.conns, o.duration);
		printf("  %" PRIu64 " handshakes in %.2f s: %.0f handshakes/s\n", st.hs_in_window,
		       o.duration, hps);
		printf("  handshake latency ms (connect to WELCOME): p50 %.3f  p99 %.3f  p99.9 %.3f  "
		       "max %.3f\n", h_quantile(&hs_hist, 0.5) / 1e6, h_quantile(&hs_hist, 0.99) / 1e6,
		       h_quantile(&hs_hist, 0.999) / 1e6, hs_hist.max / 1e6);
		printf("  errors %" PRIu64 " (connect %" PRIu64 ", io %" PRIu64 ", protocol %" PRIu64
		       ", refused %" PRIu64 "); mi-load CPU %.2f s\n", errors, st.err_connect, st.err_io,
		       st.err_proto, st.err_refused, cpu);
		return;
	}
	printf("mi-load: %s:%u, %u connections, window %u, %u-byte payloads, rate %s, %s mode%s\n",
	       o.host, o.port, o.conns, o.window, o.size, o.rate ? "limited" : "unlimited",
	       keys ? "keys" : "open", o.seal ? ", sealed" : o.mac ? ", per-frame MAC" : "");
	if (o.rate)
		printf("  offered %" PRIu64 " frames/s\n", o.rate);
	if (o.premade)
		printf("  premade: %" PRIu64 " frames a connection, built before the clock started%s; "
		       "%" PRIu64 " dropped with a lost session\n", o.premade,
		       st.exhausted ? " (a connection sent them all: the run ended there)" : "",
		       st.made_dropped);
	printf("  acked %" PRIu64 " frames in %.2f s: %.0f frames/s, %.2f MB/s payload\n", st.acked,
	       elapsed, fps, mbs);
	printf("  latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
	       h_quantile(&hist, 0.5) / 1e6, h_quantile(&hist, 0.99) / 1e6,
	       h_quantile(&hist, 0.999) / 1e6, hist.max / 1e6);
	printf("  sent %" PRIu64 " resent %" PRIu64 " unacked %" PRIu64 " nacks %" PRIu64
	       " errors %" PRIu64 " (connect %" PRIu64 ", io %" PRIu64 ", protocol %" PRIu64
	       ", refused %" PRIu64 ", ack timeout %" PRIu64 ") writes %" PRIu64 "\n",
	       st.sent, st.resent, st.outstanding, st.nacks, errors, st.err_connect, st.err_io,
	       st.err_proto, st.err_refused, st.err_timeout, st.writes);
	if (st.nacks)
		printf("  last NACK: %u %s (%s)\n", st.last_nack_code, mi_nack_name(st.last_nack_code),
		       st.last_nack);
	printf("  %" PRIu64 " handshakes, latency ms p50 %.3f p99 %.3f; mi-load CPU %.2f s\n",
	       st.handshakes, h_quantile(&hs_hist, 0.5) / 1e6, h_quantile(&hs_hist, 0.99) / 1e6, cpu);
	printf("  machine CPU over the run: busy %.2f s (%.3f us an acked frame), idle %.2f s, "
	       "steal %.2f s\n", busy, st.acked ? busy * 1e6 / (double)st.acked : 0,
	       (double)(cpu1.idle - cpu0.idle) / hz, (double)(cpu1.steal - cpu0.steal) / hz);
}

int main(int argc, char **argv)
{
	if (parse(argc, argv) < 0) {
		fputs(usage, stderr);
		return CLI_EX_USAGE;
	}
	if (setup() < 0)
		return EX_CANNOT_RUN;
	now = mono_ns();
	real_now = wall_ns();
	uint64_t t0 = now;
	t_end = t0 + (uint64_t)(o.duration * 1e9);
	t_drain = t_end + 5000000000ull;
	uint64_t t_ready = now + 60000000000ull;   /* --premade: every WELCOME by then */
	read_cpu_ticks(&cpu0);
	started = !o.premade;
	uint64_t last_refill = now, last_house = now;
	double burst = o.rate ? (o.rate / 100.0 > 1 ? o.rate / 100.0 : 1) : 0;
	for (uint32_t i = 0; i < o.conns; i++)
		conn_start(&conns[i]);

	struct epoll_event evs[1024];
	int starved = 0;
	for (;;) {
		int timeout = rq_len && !starved ? 0 : starved ? 1 : 20;
		int n = epoll_wait(ep, evs, 1024, timeout);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "mi-load: epoll_wait: %s\n", strerror(errno));
			return EX_CANNOT_RUN;
		}
		now = mono_ns();
		real_now = wall_ns();
		for (int i = 0; i < n; i++) {
			struct conn *c = &conns[evs[i].data.u32];
			if (c->fd < 0)
				continue;
			uint32_t e = evs[i].events;
			if (c->state == C_CONNECTING) {
				if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
					on_connected(c);
				continue;
			}
			if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
				on_readable(c);
			if (c->fd >= 0 && c->blocked && (e & EPOLLOUT)) {
				want_out(c, 0);
				rq_push(c);
			}
		}
		if (!started) {
			uint32_t up = 0;
			for (uint32_t i = 0; i < o.conns; i++)
				up += conns[i].state == C_UP;
			if (up < o.conns && now < t_ready) {
				if (now - last_house >= 50000000ull) {
					last_house = now;
					housekeeping();   /* retries a failed connect */
				}
				continue;
			}
			if (up < o.conns) {
				fprintf(stderr, "mi-load: --premade: only %u of %u connections were welcomed "
					"within 60 s\n", up, o.conns);
				return EX_CANNOT_RUN;
			}
			/* every session is open: make the frames (seconds, with the
			 * MAC or the seal; the sessions wait idle), then start */
			for (uint32_t i = 0; i < o.conns; i++)
				if (make_frames(&conns[i]) < 0)
					return EX_CANNOT_RUN;
			started = 1;
			now = mono_ns();
			real_now = wall_ns();
			t0 = last_refill = now;
			read_cpu_ticks(&cpu0);
			t_end = t0 + (uint64_t)(o.duration * 1e9);
			t_drain = t_end + 5000000000ull;
			for (uint32_t i = 0; i < o.conns; i++)
				rq_push(&conns[i]);
		}
		if (!stopping && now >= t_end)
			stopping = 1;
		if (stopping && (st.outstanding == 0 || now >= t_drain))
			break;
		if (o.rate) {
			tokens += (double)o.rate * (double)(now - last_refill) / 1e9;
			if (tokens > burst)
				tokens = burst;
		} else {
			tokens = 1e18;
		}
		last_refill = now;
		starved = fill_pass();
		if (now - last_house >= 50000000ull) {
			last_house = now;
			housekeeping();
		}
	}
	uint64_t t_stop = st.last_ack_ns > t_end ? st.last_ack_ns : t_end;
	if (read_cpu_ticks(&cpu1) < 0 || cpu1.busy < cpu0.busy)
		cpu1 = cpu0;
	report((double)(t_stop - t0) / 1e9);
	for (uint32_t i = 0; i < o.conns; i++) {
		if (conns[i].fd >= 0)
			close(conns[i].fd);
		mi_dec_reset(&conns[i].dec);
		sodium_memzero(conns[i].sess, sizeof(conns[i].sess));
		free(conns[i].made);
	}
	keys_free(keys);
	pool_free(pool);
	free(conns);
	free(sent_ns);
	free(rq);
	free(scratch);
	free(payload);
	close(ep);
	return 0;
}
