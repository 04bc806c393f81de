#include "client/mi_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/pool.h"

/* Window layout: frames are stored encoded (header + payload) in one byte
 * ring, in seq order, each contiguous (a frame that does not fit before the
 * end of the ring starts again at offset 0, wasting the tail).  The entry ring
 * describes them with absolute counters tail <= unsent <= head:
 *   [tail, unsent)  written to the socket, waiting for ACK/NACK
 *   [unsent, head)  queued, not yet (fully) written; unsent_off bytes of the
 *                   entry at `unsent` are already out
 * So the window is also the send buffer: a batch is one sendmsg() of the
 * contiguous bytes from `unsent` on, and a resend after reconnect is only
 * `unsent = tail`. */
struct ent {
	uint64_t seq;
	uint32_t off;
	uint32_t len;
	uint32_t nacked;
};

enum { ST_DOWN, ST_HELLO, ST_AUTH, ST_UP };   /* ST_AUTH: keys mode, AUTH sent */

#define MIC_IOV 64
#define CTRL_CAP 128

struct mic {
	struct mic_opts o;
	char host[256];
	char device[MI_DEVID_MAX + 1];
	size_t dev_len;
	char peer[344];         /* "host:port device D" for messages */

	int fd;
	int state;
	int ever_up;
	uint64_t next_seq;
	uint32_t max_frame;

	uint8_t *buf;
	uint32_t cap;
	struct ent *ent;
	uint32_t ecap;
	uint64_t tail, unsent, head;
	uint32_t unsent_off;
	uint32_t head_off;      /* end of the newest frame in buf */
	uint64_t queued_bytes;  /* bytes in [unsent, head) still to write */
	uint64_t queued_ns;     /* when the oldest queued frame was queued */

	/* PONG (and BYE) wait here; written only at a frame boundary */
	uint8_t ctrl[CTRL_CAP];
	uint32_t ctrl_len, ctrl_off;

	/* keys mode */
	int has_key, has_fpr;
	uint8_t key[32], fpr[MI_FPR_LEN];
	uint8_t cnonce[MI_NONCE_LEN], snonce[MI_NONCE_LEN];
	uint8_t sess_key[32];   /* per-frame MAC / seal key, set by WELCOME */
	/* the key and server nonce the window's sealed frames are sealed with:
	 * the last session whose WELCOME rewound the window (opts.seal) */
	uint8_t seal_key[32], seal_ns[MI_NONCE_LEN];
	uint8_t auth_fr[MI_HDR_LEN + MI_PROOF_LEN];
	int auth_out;           /* auth_fr waits to be written */

	pool_t *pool;
	struct mi_decoder dec;
	uint8_t rbuf[4096];

	uint64_t rx_mark_ns;    /* last receive, or start of the ack wait */
	uint64_t progress_ns;   /* last time the window moved forward */
	int backoff_ms;
	uint64_t rng;           /* backoff jitter */
	int progressed;         /* the window moved since the last handshake */
	int last_err;
	int nack_since_flush;
	struct mic_stats st;
	char err[512];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ms_ns(int ms) { return (uint64_t)ms * 1000000ull; }

/* poll() timeout for an absolute deadline, rounded up, capped at a minute
 * (callers loop, so a far deadline needs no exact value). */
static int ms_until(uint64_t deadline, uint64_t now)
{
	if (deadline <= now)
		return 0;
	uint64_t ms = (deadline - now + 999999) / 1000000;
	return ms > 60000 ? 60000 : (int)ms;
}

__attribute__((format(printf, 3, 4)))
static int seterr(mic_t *c, int err, const char *fmt, ...)
{
	int n = snprintf(c->err, sizeof(c->err), "%s: ", c->peer);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(c->err))
		vsnprintf(c->err + n, sizeof(c->err) - (size_t)n, fmt, ap);
	va_end(ap);
	c->last_err = err;
	return err;
}

const char *mic_strerror(int err)
{
	switch (-err) {
	case MIC_ENACK: return "frame refused by the server (NACK)";
	case MIC_EAUTH: return "handshake refused by the server";
	case MIC_EKEYS: return "server requires keys-mode authentication: give the device key";
	case MIC_EPROTO: return "protocol violation by the server";
	case MIC_ECLOSED: return "connection closed by the server";
	case MIC_EBUSY: return "server overloaded";
	case MIC_ESEQ: return "server's durable seq is ahead of this client";
	default: return err < 0 ? strerror(-err) : "success";
	}
}

const char *mic_last_error(const mic_t *c) { return c->err; }
uint64_t mic_next_seq(const mic_t *c) { return c->next_seq; }

void mic_get_stats(const mic_t *c, struct mic_stats *ret)
{
	*ret = c->st;
	ret->next_seq = c->next_seq;
	ret->max_frame = c->max_frame;
	ret->in_window = (uint32_t)(c->head - c->tail);
}

static struct ent *ent_at(mic_t *c, uint64_t i) { return &c->ent[i % c->ecap]; }

int mic_new(const struct mic_opts *opts, mic_t **ret)
{
	const char *dev = opts->device ? opts->device : "";
	const char *host = opts->host ? opts->host : "127.0.0.1";
	if (!mi_devid_valid((const uint8_t *)dev, strlen(dev)) || strlen(host) >= 256)
		return -EINVAL;
	mic_t *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *opts;
	struct mic_opts *o = &c->o;
	if (!o->port) o->port = 7400;
	if (!o->window_frames) o->window_frames = 4096;
	if (!o->window_bytes) o->window_bytes = 4u << 20;
	if (!o->batch_bytes) o->batch_bytes = 64u << 10;
	if (!o->linger_us) o->linger_us = 1000;
	if (!o->connect_timeout_ms) o->connect_timeout_ms = 5000;
	if (!o->ack_timeout_ms) o->ack_timeout_ms = 15000;
	if (!o->retry_deadline_ms) o->retry_deadline_ms = 60000;
	if (o->backoff_min_ms <= 0) o->backoff_min_ms = 20;
	if (o->backoff_max_ms <= 0) o->backoff_max_ms = 1000;
	if (o->backoff_max_ms < o->backoff_min_ms) o->backoff_max_ms = o->backoff_min_ms;
	if (o->seal && (!o->key || o->mac)) {
		free(c);
		return -EINVAL;   /* sealing needs the key; a sealed frame carries no MAC */
	}
	if (o->key) {
		if (sodium_init() < 0) {
			free(c);
			return -EIO;
		}
		memcpy(c->key, o->key, sizeof(c->key));
		c->has_key = 1;
	}
	if (o->fingerprint) {
		memcpy(c->fpr, o->fingerprint, sizeof(c->fpr));
		c->has_fpr = 1;
	}
	o->key = o->fingerprint = NULL;   /* the copies are used */
	snprintf(c->host, sizeof(c->host), "%s", host);
	c->dev_len = strlen(dev);
	memcpy(c->device, dev, c->dev_len + 1);
	o->host = c->host;
	o->device = c->device;
	snprintf(c->peer, sizeof(c->peer), "%s:%u device %s", c->host, o->port, c->device);
	c->fd = -1;
	c->cap = o->window_bytes;
	c->ecap = o->window_frames;
	c->buf = malloc(c->cap);
	c->ent = calloc(c->ecap, sizeof(*c->ent));
	c->pool = pool_new();
	if (!c->buf || !c->ent || !c->pool) {
		mic_close(c);
		return -ENOMEM;
	}
	mi_dec_init(&c->dec, c->pool, MI_MAX_FRAME_DEFAULT);
	if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != sizeof(c->rng) || !c->rng)
		c->rng = (uintptr_t)c ^ now_ns() ^ 0x9e3779b97f4a7c15ull;
	*ret = c;
	return 0;
}

static void conn_close(mic_t *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = ST_DOWN;
	c->ctrl_len = c->ctrl_off = 0;
	mi_dec_reset(&c->dec);
}

/* Sleep before the next attempt: backoff_ms minus up to half of it at
 * random, so many devices dropped at once do not all retry in step. */
static int backoff_jittered(mic_t *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	int half = c->backoff_ms / 2;
	return c->backoff_ms - (half > 0 ? (int)(c->rng % (uint64_t)(half + 1)) : 0);
}

static void backoff_grow(mic_t *c)
{
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : c->o.backoff_min_ms;
	if (c->backoff_ms > c->o.backoff_max_ms)
		c->backoff_ms = c->o.backoff_max_ms;
}

/* A connection that failed after the handshake: count it, keep the window.
 * The first reconnect after a healthy connection is immediate; a server that
 * accepts and drops us without acking anything is retried with backoff. */
static void conn_lost(mic_t *c)
{
	if (c->fd >= 0)
		c->st.conn_errors++;
	if (!c->progressed)
		backoff_grow(c);
	conn_close(c);
}

void mic_close(mic_t *c)
{
	if (!c)
		return;
	if (c->fd >= 0 && c->state == ST_UP && (c->unsent_off == 0 || c->unsent == c->head)) {
		uint8_t bye[MI_HDR_LEN];
		mi_frame_build(bye, sizeof(bye), MI_BYE, 0, 0, 0, 0, NULL, 0);
		/* best effort: the socket is closing either way */
		ssize_t r = send(c->fd, bye, sizeof(bye), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)r;
	}
	conn_close(c);
	pool_free(c->pool);
	free(c->ent);
	free(c->buf);
	sodium_memzero(c->key, sizeof(c->key));
	sodium_memzero(c->sess_key, sizeof(c->sess_key));
	sodium_memzero(c->seal_key, sizeof(c->seal_key));
	free(c);
}

/* ---- window ---- */

/* Offset where a frame of n bytes fits, or -1.  Frames are never empty, so
 * head_off > tail offset means the live bytes do not wrap. */
static int64_t win_place(const mic_t *c, uint32_t n)
{
	if (c->head - c->tail >= c->ecap)
		return -1;
	if (c->head == c->tail)
		return n <= c->cap ? 0 : -1;
	uint32_t t = c->ent[c->tail % c->ecap].off, h = c->head_off;
	if (h > t) {
		if (c->cap - h >= n)
			return (int64_t)h;
		return t >= n ? 0 : -1;
	}
	return t - h >= n ? (int64_t)h : -1;
}

static void skip_nacked_unsent(mic_t *c)
{
	while (c->unsent < c->head && c->unsent_off == 0 && ent_at(c, c->unsent)->nacked)
		c->unsent++;
}

/* Releases written frames from the tail that are acked (seq <= ack_seq) or
 * nacked.  Frames not fully written are never released: dropping one would
 * cut the byte stream in the middle of a frame. */
static void win_release(mic_t *c)
{
	uint64_t before = c->tail;
	while (c->tail < c->unsent) {
		struct ent *e = ent_at(c, c->tail);
		if (e->nacked)
			;
		else if (e->seq <= c->st.ack_seq)
			c->st.acked++;
		else
			break;
		c->tail++;
	}
	if (c->tail != before) {
		c->progress_ns = c->rx_mark_ns = now_ns();
		c->backoff_ms = 0;
		c->progressed = 1;
	}
}

/* Fills in the per-frame MAC of the DATA frame at fr (header with flags bit
 * 1 and len counting the MAC already written), then pcrc and hcrc. */
static void mac_frame(const mic_t *c, uint8_t *fr)
{
	struct mi_hdr h = {
		.version = fr[2], .type = fr[3], .flags = mi_get16(fr + 4), .topic = mi_get16(fr + 6),
		.len = mi_get32(fr + 8), .seq = mi_get64(fr + 16), .ts_ns = mi_get64(fr + 24),
	};
	uint8_t *pl = fr + MI_HDR_LEN;
	uint32_t dlen = h.len - MI_MAC_LEN;
	mi_frame_mac(pl + dlen, c->sess_key, &h, pl, dlen);
	h.pcrc = mi_crc32(pl, h.len);
	mi_hdr_encode(&h, fr);
}

/* ---- sealed frames (docs/PROTOCOL.md "Sealed DATA") ---- */

#define SEAL_NONCE_LEN 24
#define SEAL_AD_LEN 28

/* nonce = Ns || seq (header bytes 16..23, already u64 LE);
 * AD = header bytes 0..11 || 16..31 */
static void seal_params(const uint8_t *fr, const uint8_t ns[MI_NONCE_LEN],
			uint8_t nonce[SEAL_NONCE_LEN], uint8_t ad[SEAL_AD_LEN])
{
	memcpy(nonce, ns, MI_NONCE_LEN);
	memcpy(nonce + MI_NONCE_LEN, fr + 16, 8);
	memcpy(ad, fr, 12);
	memcpy(ad + 12, fr + 16, 16);
}

/* fr: a DATA header already encoded (flags, topic, len = p + 16, seq, ts_ns)
 * followed by p plaintext bytes and room for the tag.  Encrypts in place,
 * appends the tag, then writes pcrc and hcrc. */
static void seal_inplace(uint8_t *fr, const uint8_t key[32], const uint8_t ns[MI_NONCE_LEN])
{
	uint8_t nonce[SEAL_NONCE_LEN], ad[SEAL_AD_LEN];
	uint32_t len = mi_get32(fr + 8);
	uint8_t *pl = fr + MI_HDR_LEN;
	seal_params(fr, ns, nonce, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(pl, NULL, pl, len - MIC_SEAL_TAG_LEN, ad, sizeof(ad),
						   NULL, nonce, key);
	mi_put32(fr + 12, mi_crc32(pl, len));
	mi_put32(fr + 32, mi_crc32(fr, 32));
}

/* The reverse, in place: the plaintext back at fr + 36 (the tag bytes are
 * left as they were).  0, or -1 when the tag does not verify. */
static int open_inplace(uint8_t *fr, const uint8_t key[32], const uint8_t ns[MI_NONCE_LEN])
{
	uint8_t nonce[SEAL_NONCE_LEN], ad[SEAL_AD_LEN];
	uint32_t len = mi_get32(fr + 8);
	uint8_t *pl = fr + MI_HDR_LEN;
	seal_params(fr, ns, nonce, ad);
	return crypto_aead_xchacha20poly1305_ietf_decrypt(pl, NULL, NULL, pl, len, ad, sizeof(ad), nonce,
							  key) == 0 ? 0 : -1;
}

size_t mic_seal_frame(uint8_t *out, size_t cap, const uint8_t key[MIC_SEAL_KEY_LEN],
		      const uint8_t ns[MIC_SEAL_NS_LEN], uint16_t topic, uint64_t seq, uint64_t ts_ns,
		      const void *pt, uint32_t len)
{
	if (len > MI_MAX_FRAME_CAP - MIC_SEAL_TAG_LEN || cap < MI_HDR_LEN + (size_t)len + MIC_SEAL_TAG_LEN)
		return 0;
	struct mi_hdr h = { .version = MI_VERSION, .type = MI_DATA, .flags = MI_F_SEALED, .topic = topic,
			    .len = len + MIC_SEAL_TAG_LEN, .seq = seq, .ts_ns = ts_ns };
	if (len && pt != out + MI_HDR_LEN)
		memmove(out + MI_HDR_LEN, pt, len);
	mi_hdr_encode(&h, out);
	seal_inplace(out, key, ns);
	return MI_HDR_LEN + (size_t)len + MIC_SEAL_TAG_LEN;
}

/* After a WELCOME with durable seq w: frames <= w are acked, the rest are
 * queued again from the tail (MACed or sealed again: the session key and,
 * for sealing, the nonce are new). */
static void win_rewind(mic_t *c, uint64_t w)
{
	uint64_t t = c->tail;
	uint64_t old_unsent = c->unsent;
	int partial = c->unsent_off > 0;
	for (; t < c->head && ent_at(c, t)->seq <= w; t++)
		if (!ent_at(c, t)->nacked)
			c->st.acked++;
	if (t != c->tail) {
		c->progress_ns = now_ns();
		c->progressed = 1;
	}
	c->tail = c->unsent = t;
	c->unsent_off = 0;
	c->queued_bytes = 0;
	for (uint64_t i = t; i < c->head; i++) {
		struct ent *e = ent_at(c, i);
		if (e->nacked)
			continue;
		c->queued_bytes += e->len;
		uint8_t *fr = c->buf + e->off;
		if (fr[4] & MI_F_MAC) {
			mac_frame(c, fr);
		} else if (fr[4] & MI_F_SEALED) {
			/* the window holds it sealed with the previous session's key
			 * and nonce: back to the plaintext, then sealed for this one */
			if (open_inplace(fr, c->seal_key, c->seal_ns) < 0) {
				/* cannot happen unless the window memory was damaged:
				 * never send it, report it as a refusal */
				e->nacked = 1;
				c->queued_bytes -= e->len;
				c->st.nacked++;
				c->nack_since_flush = 1;
				c->st.last_nack_seq = e->seq;
				c->st.last_nack_code = 0;
				snprintf(c->st.last_nack_reason, sizeof(c->st.last_nack_reason),
					 "client: sealed frame in the window does not open: not resent");
				if (c->o.on_nack)
					c->o.on_nack(c->o.on_nack_arg, e->seq, 0, c->st.last_nack_reason);
				continue;
			}
			seal_inplace(fr, c->sess_key, c->snonce);
		}
		if (i < old_unsent || (i == old_unsent && partial))
			c->st.resent++;
	}
	if (c->o.seal) {
		memcpy(c->seal_key, c->sess_key, sizeof(c->seal_key));
		memcpy(c->seal_ns, c->snonce, sizeof(c->seal_ns));
	}
	c->queued_ns = now_ns();
	skip_nacked_unsent(c);
	win_release(c);
}

/* ---- output ---- */

static int has_output(const mic_t *c) { return c->ctrl_len > c->ctrl_off || c->unsent < c->head; }

static void out_advance(mic_t *c, size_t n)
{
	if (c->ctrl_len > c->ctrl_off && c->unsent_off == 0) {
		size_t k = c->ctrl_len - c->ctrl_off;
		if (n < k) {
			c->ctrl_off += (uint32_t)n;
			return;
		}
		n -= k;
		c->ctrl_len = c->ctrl_off = 0;
	}
	while (n > 0 && c->unsent < c->head) {
		struct ent *e = ent_at(c, c->unsent);
		size_t rest = e->len - c->unsent_off;
		if (n < rest) {
			c->unsent_off += (uint32_t)n;
			c->queued_bytes -= n;
			return;
		}
		n -= rest;
		c->queued_bytes -= rest;
		c->unsent++;
		c->unsent_off = 0;
		skip_nacked_unsent(c);
	}
	win_release(c);   /* a frame NACKed while half-written is done now */
}

/* Writes as much as the socket takes without blocking, one sendmsg() per
 * batch of contiguous frames.  0 (maybe with output left) or -errno. */
static int out_write(mic_t *c)
{
	while (has_output(c)) {
		struct iovec iov[MIC_IOV];
		int n = 0;
		uint32_t skip = c->unsent_off;
		int ctrl = c->ctrl_len > c->ctrl_off && skip == 0;
		if (ctrl)
			iov[n++] = (struct iovec){ c->ctrl + c->ctrl_off, c->ctrl_len - c->ctrl_off };
		for (uint64_t i = c->unsent; i < c->head; i++) {
			struct ent *e = ent_at(c, i);
			if (e->nacked && skip == 0)
				continue;   /* a half-written one must still be finished */
			uint8_t *p = c->buf + e->off + skip;
			size_t l = e->len - skip;
			skip = 0;
			if (n > (int)ctrl && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p)
				iov[n - 1].iov_len += l;
			else if (n < MIC_IOV)
				iov[n++] = (struct iovec){ p, l };
			else
				break;
			/* a PONG is waiting behind a half-written frame: finish that one first */
			if (c->ctrl_len > c->ctrl_off && !ctrl)
				break;
		}
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return seterr(c, -errno, "write: %s", strerror(errno));
		}
		c->st.writes++;
		if (c->tail == c->unsent)
			c->rx_mark_ns = now_ns();  /* the ack wait starts now */
		out_advance(c, (size_t)w);
	}
	return 0;
}

/* ---- input ---- */

/* keyed BLAKE2b-256 (device key) over label || server nonce || client nonce
 * [|| device id || fingerprint] */
static void keyed_hash(const mic_t *c, uint8_t out[32], const char *label, int with_id)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, c->key, sizeof(c->key), 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, c->snonce, MI_NONCE_LEN);
	crypto_generichash_update(&st, c->cnonce, MI_NONCE_LEN);
	if (with_id) {
		crypto_generichash_update(&st, (const uint8_t *)c->device, c->dev_len);
		if (c->has_fpr)
			crypto_generichash_update(&st, c->fpr, MI_FPR_LEN);
	}
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

static int on_nack(mic_t *c, const struct mi_frame *f)
{
	unsigned code = f->h.len >= 2 ? mi_get16(f->payload) : 0;
	size_t rl = f->h.len > 2 ? f->h.len - 2 : 0;
	char reason[sizeof(c->st.last_nack_reason)];
	if (rl >= sizeof(reason))
		rl = sizeof(reason) - 1;
	memcpy(reason, f->payload + 2, rl);
	reason[rl] = 0;
	for (size_t i = 0; i < rl; i++)
		if (reason[i] < 0x20 && reason[i] > 0)
			reason[i] = ' ';
	memcpy(c->st.last_nack_reason, reason, rl + 1);
	c->st.last_nack_code = code;
	c->st.last_nack_seq = f->h.seq;

	if (c->state == ST_HELLO || c->state == ST_AUTH) {
		if (code == MI_NACK_OVERLOADED)
			return seterr(c, -MIC_EBUSY, "HELLO refused: %s (%s)", mi_nack_name(code), reason);
		return seterr(c, -MIC_EAUTH, "HELLO refused: NACK %u %s (%s)", code,
			      mi_nack_name(code), reason);
	}
	struct ent *hit = NULL;
	/* up to head: a frame can be NACKed on its header while its payload is
	 * still being written */
	for (uint64_t i = c->tail; i < c->head; i++) {
		struct ent *e = ent_at(c, i);
		if (e->seq == f->h.seq) {
			hit = e;
			break;
		}
		if (e->seq > f->h.seq)
			break;
	}
	if (!hit && f->h.seq == 0) {
		/* not about a frame: the session itself is refused */
		int err = code == MI_NACK_OVERLOADED ? -MIC_EBUSY : -MIC_EAUTH;
		return seterr(c, err, "NACK %u %s (%s)", code, mi_nack_name(code), reason);
	}
	if (hit && hit->nacked)
		return 0;   /* told twice */
	c->st.nacked++;
	c->nack_since_flush = 1;
	seterr(c, -MIC_ENACK, "seq %llu NACK %u %s (%s)", (unsigned long long)f->h.seq, code,
	       mi_nack_name(code), reason);
	if (hit) {
		hit->nacked = 1;
		win_release(c);
	}
	if (c->o.on_nack)
		c->o.on_nack(c->o.on_nack_arg, f->h.seq, code, reason);
	return 0;
}

static int on_frame(mic_t *c, const struct mi_frame *f)
{
	if (!f->pcrc_ok)
		return seterr(c, -MIC_EPROTO, "%s frame with a bad payload checksum",
			      mi_type_name(f->h.type));
	switch (f->h.type) {
	case MI_WELCOME:
		if (c->state != ST_HELLO && c->state != ST_AUTH)
			break;
		if (f->h.len < 4)
			return seterr(c, -MIC_EPROTO, "WELCOME payload of %u bytes (want >= 4)", f->h.len);
		if (c->has_key) {
			uint8_t want[MI_PROOF_LEN];
			if (c->state != ST_AUTH)
				return seterr(c, -MIC_EAUTH, "server sent WELCOME without CHALLENGE: it does "
					      "not prove it holds the device key (server in open mode?)");
			if (f->h.len < 4 + MI_PROOF_LEN)
				return seterr(c, -MIC_EPROTO, "WELCOME payload of %u bytes (want %u)", f->h.len,
					      4 + MI_PROOF_LEN);
			keyed_hash(c, want, "MI1-srv", 1);
			int ok = sodium_memcmp(want, f->payload + 4, MI_PROOF_LEN) == 0;
			sodium_memzero(want, sizeof(want));
			if (!ok)
				return seterr(c, -MIC_EAUTH, "WELCOME carries a wrong server proof: the server "
					      "does not hold the device key");
			keyed_hash(c, c->sess_key, "MI1-sess", 0);
		}
		c->max_frame = mi_get32(f->payload);
		c->st.welcome_seq = f->h.seq;
		c->state = ST_UP;
		return 0;
	case MI_CHALLENGE:
		if (c->state != ST_HELLO)
			break;
		if (!c->has_key)
			return seterr(c, -MIC_EKEYS, "server answered HELLO with CHALLENGE (keys mode): "
				      "no device key given");
		if (f->h.len != MI_NONCE_LEN)
			return seterr(c, -MIC_EPROTO, "CHALLENGE payload of %u bytes (want %u)", f->h.len,
				      MI_NONCE_LEN);
		memcpy(c->snonce, f->payload, MI_NONCE_LEN);
		{
			uint8_t proof[MI_PROOF_LEN];
			keyed_hash(c, proof, "MI1-auth", 1);
			mi_frame_build(c->auth_fr, sizeof(c->auth_fr), MI_AUTH, 0, 0, 0, 0, proof, MI_PROOF_LEN);
			sodium_memzero(proof, sizeof(proof));
		}
		c->auth_out = 1;
		c->state = ST_AUTH;
		return 0;
	case MI_ACK: {
		if (c->state != ST_UP)
			break;
		/* an ACK beyond what was written must not acknowledge frames in
		 * advance: clamp it to the newest written seq */
		uint64_t a = f->h.seq;
		if (c->unsent == c->tail)
			return 0;
		if (a > ent_at(c, c->unsent - 1)->seq)
			a = ent_at(c, c->unsent - 1)->seq;
		if (a > c->st.ack_seq)
			c->st.ack_seq = a;
		win_release(c);
		return 0;
	}
	case MI_NACK:
		return on_nack(c, f);
	case MI_PING:
		if (c->ctrl_len == 0 &&
		    mi_frame_build(c->ctrl, sizeof(c->ctrl), MI_PONG, 0, 0, f->h.seq, 0, NULL, 0))
			c->ctrl_len = MI_HDR_LEN;
		return 0;
	case MI_PONG:
		return 0;
	case MI_BYE:
		return seterr(c, -MIC_ECLOSED, "server said BYE");
	}
	return seterr(c, -MIC_EPROTO, "unexpected %s frame (type %u)", mi_type_name(f->h.type),
		      f->h.type);
}

/* Reads what is there without blocking.  0 or a negative error. */
static int in_read(mic_t *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->rbuf, sizeof(c->rbuf), MSG_DONTWAIT);
		if (r == 0)
			return seterr(c, -MIC_ECLOSED, "connection closed by the server");
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return seterr(c, -errno, "read: %s", strerror(errno));
		}
		c->rx_mark_ns = now_ns();
		size_t off = 0;
		while (off < (size_t)r) {
			struct mi_frame f;
			size_t used;
			int d = mi_dec_next(&c->dec, c->rbuf + off, (size_t)r - off, &used, &f);
			off += used;
			if (d < 0)
				return seterr(c, -MIC_EPROTO, "framing error from the server: %s",
					      mi_frame_strerror(d));
			if (d == MI_DEC_TOO_LARGE)
				return seterr(c, -MIC_EPROTO, "server sent a %s frame of %u bytes",
					      mi_type_name(f.h.type), f.h.len);
			if (d == MI_DEC_FRAME) {
				int e = on_frame(c, &f);
				if (e < 0)
					return e;
			}
		}
		if ((size_t)r < sizeof(c->rbuf))
			return 0;
	}
}

/* One poll round: waits (until deadline) for the socket, then writes and
 * reads.  Also detects a dead peer (no ACK for ack_timeout_ms). */
static int io_step(mic_t *c, uint64_t deadline)
{
	uint64_t now = now_ns();
	if (c->tail < c->unsent && now - c->rx_mark_ns >= ms_ns(c->o.ack_timeout_ms))
		return seterr(c, -ETIMEDOUT, "no ACK for %d ms (%llu frames outstanding)",
			      c->o.ack_timeout_ms, (unsigned long long)(c->unsent - c->tail));
	if (c->tail < c->unsent && c->rx_mark_ns + ms_ns(c->o.ack_timeout_ms) < deadline)
		deadline = c->rx_mark_ns + ms_ns(c->o.ack_timeout_ms);
	struct pollfd p = { .fd = c->fd, .events = POLLIN | (has_output(c) ? POLLOUT : 0) };
	int r = poll(&p, 1, ms_until(deadline, now));
	if (r < 0)
		return errno == EINTR ? 0 : seterr(c, -errno, "poll: %s", strerror(errno));
	if (r == 0)
		return 0;
	if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
		int e = in_read(c);
		if (e < 0)
			return e;
	}
	if (has_output(c))
		return out_write(c);
	return 0;
}

/* ---- connecting ---- */

static int tcp_connect(mic_t *c, uint64_t deadline)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char port[8];
	snprintf(port, sizeof(port), "%u", c->o.port);
	int g = getaddrinfo(c->host, port, &hints, &ai);
	if (g != 0)
		return seterr(c, -EHOSTUNREACH, "resolve: %s", gai_strerror(g));
	int err = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			err = seterr(c, -errno, "socket: %s", strerror(errno));
			continue;
		}
		int one = 1;
		/* batching is done here; Nagle would only delay the batch's tail */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			err = seterr(c, -errno, "connect: %s", strerror(errno));
			close(fd);
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r;
		while ((r = poll(&p, 1, ms_until(deadline, now_ns()))) < 0 && errno == EINTR)
			;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (r == 0)
			soerr = ETIMEDOUT;
		else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			err = seterr(c, -soerr, "connect: %s", strerror(soerr));
			close(fd);
			continue;
		}
		freeaddrinfo(ai);
		c->fd = fd;
		return 0;
	}
	freeaddrinfo(ai);
	return err;
}

/* Writes a handshake frame whole before the deadline. */
static int send_all(mic_t *c, const uint8_t *fr, size_t n, uint64_t deadline, const char *what)
{
	size_t off = 0;
	while (off < n) {
		ssize_t w = send(c->fd, fr + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w >= 0) {
			off += (size_t)w;
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return seterr(c, -errno, "write %s: %s", what, strerror(errno));
		uint64_t now = now_ns();
		if (now >= deadline)
			return seterr(c, -ETIMEDOUT, "write %s: timed out", what);
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		poll(&p, 1, ms_until(deadline, now));
	}
	return 0;
}

static int send_hello(mic_t *c, uint64_t deadline)
{
	uint8_t pl[1 + MI_DEVID_MAX + MI_NONCE_LEN + MI_FPR_LEN];
	uint8_t fr[MI_HDR_LEN + sizeof(pl)];
	pl[0] = (uint8_t)c->dev_len;
	memcpy(pl + 1, c->device, c->dev_len);
	/* the nonce only matters for keys mode, but open mode must send one too */
	if (getrandom(c->cnonce, MI_NONCE_LEN, 0) != MI_NONCE_LEN)
		return seterr(c, -EIO, "getrandom: %s", strerror(errno));
	memcpy(pl + 1 + c->dev_len, c->cnonce, MI_NONCE_LEN);
	uint32_t len = (uint32_t)(1 + c->dev_len + MI_NONCE_LEN);
	if (c->has_fpr) {
		memcpy(pl + len, c->fpr, MI_FPR_LEN);
		len += MI_FPR_LEN;
	}
	size_t n = mi_frame_build(fr, sizeof(fr), MI_HELLO, c->has_fpr ? MI_F_FPR : 0, 0, 0, 0, pl, len);
	return send_all(c, fr, n, deadline, "HELLO");
}

/* One attempt: TCP connect, HELLO, WELCOME, window rewind. */
static int connect_once(mic_t *c, uint64_t deadline)
{
	uint64_t d = now_ns() + ms_ns(c->o.connect_timeout_ms);
	if (d < deadline)
		deadline = d;
	conn_close(c);
	int r = tcp_connect(c, deadline);
	if (r < 0)
		goto fail;
	c->state = ST_HELLO;
	r = send_hello(c, deadline);
	if (r < 0)
		goto fail;
	c->rx_mark_ns = now_ns();
	c->auth_out = 0;
	while (c->state == ST_HELLO || c->state == ST_AUTH) {
		uint64_t now = now_ns();
		if (now >= deadline) {
			r = seterr(c, -ETIMEDOUT, "no WELCOME within %d ms", c->o.connect_timeout_ms);
			goto fail;
		}
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, ms_until(deadline, now)) > 0) {
			r = in_read(c);
			if (r < 0)
				goto fail;
		}
		if (c->auth_out) {
			c->auth_out = 0;
			r = send_all(c, c->auth_fr, sizeof(c->auth_fr), deadline, "AUTH");
			if (r < 0)
				goto fail;
		}
	}
	uint64_t w = c->st.welcome_seq;
	if (!c->ever_up) {
		c->next_seq = c->o.start_seq > w ? c->o.start_seq : w + 1;
		c->ever_up = 1;
	} else {
		if (w >= c->next_seq) {
			r = seterr(c, -MIC_ESEQ, "WELCOME says seq %llu is durable but this client "
				   "has only used seqs below %llu: is the device used elsewhere?",
				   (unsigned long long)w, (unsigned long long)c->next_seq);
			goto fail;
		}
		c->st.reconnects++;
	}
	if (w < c->st.ack_seq)
		c->st.welcome_behind++;
	else
		c->st.ack_seq = w;
	c->err[0] = 0;
	c->last_err = 0;
	c->progressed = 0;
	win_rewind(c, w);
	return 0;
fail:
	c->st.conn_errors++;
	conn_close(c);
	return r;
}

static int is_fatal(int r)
{
	return r == -MIC_EAUTH || r == -MIC_EKEYS || r == -MIC_ESEQ || r == -EINVAL ||
	       r == -ENOMEM || r == -EMSGSIZE;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Attempts with exponential backoff until connected, a fatal error, the
 * attempt limit or the deadline.  At least one attempt is made. */
static int connect_retry(mic_t *c, uint64_t deadline)
{
	for (int attempt = 1;; attempt++) {
		if (c->backoff_ms > 0) {
			uint64_t now = now_ns();
			if (now >= deadline && attempt > 1)
				return c->last_err ? c->last_err : -ETIMEDOUT;
			int ms = backoff_jittered(c);
			if (now + ms_ns(ms) > deadline)
				ms = deadline > now ? (int)((deadline - now) / 1000000) : 0;
			sleep_ms(ms);
		}
		int r = connect_once(c, deadline);
		if (r == 0)
			return 0;
		backoff_grow(c);
		if (is_fatal(r) || (c->o.retry_attempts > 0 && attempt >= c->o.retry_attempts) ||
		    now_ns() >= deadline)
			return r;
	}
}

int mic_connect(mic_t *c, int timeout_ms)
{
	if (c->fd >= 0 && c->state == ST_UP)
		return 0;
	return connect_retry(c, now_ns() + ms_ns(timeout_ms > 0 ? timeout_ms : 0));
}

int mic_reconnect(mic_t *c)
{
	if (c->fd >= 0)
		c->st.conn_errors++;
	return connect_once(c, UINT64_MAX);
}

/* ---- driving ---- */

enum want { W_UP, W_ROOM, W_EMPTY };

static int satisfied(const mic_t *c, enum want w, uint32_t need)
{
	if (w == W_EMPTY && c->tail == c->head && c->fd < 0)
		return 1;   /* nothing to wait for: no need to connect */
	if (c->fd < 0 || c->state != ST_UP)
		return 0;
	switch (w) {
	case W_UP: return 1;
	case W_ROOM: return win_place(c, need) >= 0;
	case W_EMPTY: return c->tail == c->head && !has_output(c);
	}
	return 0;
}

/* Runs I/O until want holds, reconnecting when the connection drops.  Gives
 * up at hard_deadline, or when nothing was acked for retry_deadline_ms. */
static int drive(mic_t *c, enum want w, uint32_t need, uint64_t hard_deadline)
{
	uint64_t start = now_ns();
	int no_retry = c->o.retry_deadline_ms < 0;
	for (;;) {
		if (satisfied(c, w, need))
			return 0;
		uint64_t now = now_ns();
		uint64_t base = c->progress_ns > start ? c->progress_ns : start;
		uint64_t give_up = no_retry ? hard_deadline : base + ms_ns(c->o.retry_deadline_ms);
		if (give_up > hard_deadline)
			give_up = hard_deadline;
		if (now >= give_up) {
			if (c->last_err && c->fd < 0)
				return c->last_err;
			return seterr(c, -ETIMEDOUT, "timed out waiting for %s (%llu frames unacked)",
				      w == W_EMPTY ? "ACKs" : w == W_ROOM ? "window room" : "connection",
				      (unsigned long long)(c->head - c->tail));
		}
		int r;
		if (c->fd < 0) {
			if (no_retry && c->ever_up)
				return c->last_err ? c->last_err : -ENOTCONN;
			/* connect_retry fails only when fatal, out of attempts or out of time */
			r = connect_retry(c, no_retry ? now : give_up);
			if (r < 0)
				return r;
			continue;
		}
		r = io_step(c, give_up);
		if (r < 0) {
			conn_lost(c);
			if (is_fatal(r) || no_retry)
				return r;
		}
	}
}

int mic_send_ts(mic_t *c, uint16_t topic, uint64_t ts_ns, const void *payload, uint32_t len,
		uint64_t *ret_seq)
{
	/* what the MAC or the seal's tag adds to the payload */
	uint32_t maclen = (c->o.mac || c->o.seal) && c->has_key ? MI_MAC_LEN : 0;
	if (len > MI_MAX_FRAME_CAP || len + MI_HDR_LEN + maclen > c->cap)
		return seterr(c, -EMSGSIZE, "payload of %u bytes does not fit the %u-byte window",
			      len, c->cap);
	int r = drive(c, W_UP, 0, UINT64_MAX);
	if (r < 0)
		return r;
	if (len + maclen > c->max_frame)
		return seterr(c, -EMSGSIZE, "payload of %u bytes%s is above the server's max frame %u",
			      len, !maclen ? "" : c->o.seal ? " + 16-byte seal tag" : " + 16-byte MAC",
			      c->max_frame);
	uint32_t n = MI_HDR_LEN + len + maclen;
	r = drive(c, W_ROOM, n, UINT64_MAX);
	if (r < 0)
		return r;
	int64_t off = win_place(c, n);
	uint64_t seq = c->next_seq++;
	if (maclen && c->o.seal) {
		mic_seal_frame(c->buf + off, n, c->seal_key, c->seal_ns, topic ? topic : c->o.topic, seq,
			       ts_ns, payload, len);
	} else if (maclen) {
		uint8_t *fr = c->buf + off;
		struct mi_hdr h = { .type = MI_DATA, .flags = MI_F_MAC, .topic = topic ? topic : c->o.topic,
				    .len = len + maclen, .seq = seq, .ts_ns = ts_ns };
		mi_hdr_encode(&h, fr);
		if (len)
			memcpy(fr + MI_HDR_LEN, payload, len);
		mac_frame(c, fr);
	} else {
		mi_frame_build(c->buf + off, n, MI_DATA, 0, topic ? topic : c->o.topic, seq, ts_ns,
			       payload, len);
	}
	*ent_at(c, c->head) = (struct ent){ .seq = seq, .off = (uint32_t)off, .len = n };
	c->head++;
	c->head_off = (uint32_t)off + n;
	uint64_t now = 0;
	if (c->queued_bytes == 0)
		c->queued_ns = now = now_ns();
	c->queued_bytes += n;
	c->st.sent++;
	if (ret_seq)
		*ret_seq = seq;

	int go = c->o.linger_us < 0 || c->queued_bytes >= c->o.batch_bytes ||
		 win_place(c, n) < 0;
	if (!go) {
		if (!now)
			now = now_ns();
		go = now - c->queued_ns >= (uint64_t)c->o.linger_us * 1000;
	}
	if (go) {
		/* the frame is in the window: a failure here is resent after reconnect */
		r = out_write(c);
		if (r == 0)
			r = in_read(c);
		if (r < 0)
			conn_lost(c);
		c->queued_ns = now_ns();
	}
	return 0;
}

int mic_send(mic_t *c, uint16_t topic, const void *payload, uint32_t len)
{
	return mic_send_ts(c, topic, real_ns(), payload, len, NULL);
}

int mic_poll(mic_t *c, int timeout_ms)
{
	if (c->fd < 0)
		return c->last_err ? c->last_err : -ENOTCONN;
	int r = out_write(c);
	if (r == 0)
		r = in_read(c);
	if (r == 0 && timeout_ms > 0)
		r = io_step(c, now_ns() + ms_ns(timeout_ms));
	if (r < 0)
		conn_lost(c);
	return r;
}

int mic_flush(mic_t *c, int timeout_ms)
{
	uint64_t hard = timeout_ms < 0 ? UINT64_MAX : now_ns() + ms_ns(timeout_ms);
	int r = drive(c, W_EMPTY, 0, hard);
	if (r < 0)
		return r;
	if (c->nack_since_flush) {
		c->nack_since_flush = 0;
		return seterr(c, -MIC_ENACK, "%llu frame(s) NACKed, last seq %llu: %u %s (%s)",
			      (unsigned long long)c->st.nacked, (unsigned long long)c->st.last_nack_seq,
			      c->st.last_nack_code, mi_nack_name(c->st.last_nack_code),
			      c->st.last_nack_reason);
	}
	return 0;
}
