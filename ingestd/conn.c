/* conn — a connection's byte paths: reads bounded by ring space, decoding,
 * and output that is sent at once or buffered until the socket drains. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ingestd/ingestd.h"
#include "shm/atomic.h"

uint64_t ring_free(const struct worker *w)
{
	uint64_t used = w->ring.head - shm_load_acquire(&w->ring.h->released);
	return w->ring.cap - used;
}

const char *conn_peer(const struct conn *c, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	const struct in6_addr *ip = &c->peer.sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(ip))
		inet_ntop(AF_INET, &ip->s6_addr[12], a, sizeof(a));
	else
		inet_ntop(AF_INET6, ip, a, sizeof(a));
	snprintf(buf, len, "%s:%u", a, ntohs(c->peer.sin6_port));
	return buf;
}

static void ready_push(struct worker *w, struct conn *c)
{
	if (c->in_ready_list)
		return;
	c->in_ready_list = 1;
	c->ready_next = w->ready_head;
	w->ready_head = c;
}

/* Returns 0, or -1 when the connection was closed. */
static int process(struct worker *w, struct conn *c, const uint8_t *buf, size_t n)
{
	if (c->state == CS_NEW) {
		if (buf[0] == '{') {
			if (!w->s->ndjson) {
				static const char msg[] = "{\"error\":\"NDJSON is disabled on this server ([auth] ndjson)\"}\n";
				shm_count(&w->ctr[IC_NDJSON_ERRORS], 1);
				/* a failed send has closed (and freed) c already */
				if (conn_send(w, c, msg, sizeof(msg) - 1) == 0)
					conn_close(w, c, "NDJSON line but [auth] ndjson is off");
				return -1;
			}
			if (w->keys_mode) {
				static const char msg[] =
					"{\"error\":\"NDJSON is refused in [auth] mode = keys: devices must authenticate with the binary protocol\"}\n";
				shm_count(&w->ctr[IC_NDJSON_ERRORS], 1);
				if (conn_send(w, c, msg, sizeof(msg) - 1) == 0)
					conn_close(w, c, "NDJSON line refused in keys mode");
				return -1;
			}
			c->state = CS_NDJSON;
		} else {
			c->state = CS_AWAIT_HELLO;
		}
	}
	if (c->state == CS_NDJSON)
		return ndjson_feed(w, c, buf, n);
	size_t off = 0;
	while (off < n) {
		struct mi_frame f;
		size_t used;
		int r = mi_dec_next(&c->dec, buf + off, n - off, &used, &f);
		off += used;
		if (r < 0) {
			char why[96];
			shm_count(&w->ctr[IC_FRAMING_ERRORS], 1);
			filter_count(w, DROP_FRAMING, (uint32_t)(n - off + used));
			filter_failure(w, &c->peer.sin6_addr);
			snprintf(why, sizeof(why), "framing error: %s", mi_frame_strerror(r));
			conn_close(w, c, why);
			return -1;
		}
		if (r == MI_DEC_TOO_LARGE) {
			char why[96];
			shm_count(&w->ctr[IC_FRAMES_IN], 1);
			snprintf(why, sizeof(why), "payload of %u bytes is over max_frame %llu", f.h.len,
				 (unsigned long long)w->s->max_frame);
			if (session_nack(w, c, f.h.seq, MI_NACK_TOO_LARGE, why) < 0)
				return -1;
		} else if (r == MI_DEC_FRAME) {
			shm_count(&w->ctr[IC_FRAMES_IN], 1);
			if (session_frame(w, c, &f) < 0)
				return -1;
		}
	}
	return 0;
}

void conn_on_readable(struct worker *w, struct conn *c)
{
	for (int budget = READ_BUDGET; budget > 0; budget--) {
		if (c->state == CS_CLOSING || c->eof)
			return;
		uint64_t free_bytes = ring_free(w);
		if (free_bytes < 2ull * w->max_rec + (uint64_t)READ_MIN * REC_EXPANSION) {
			/* ring full: leave the bytes in the socket; TCP pushes back */
			if (!w->ring_full)
				shm_count(&w->ctr[IC_RING_FULL_STALLS], 1);
			w->ring_full = 1;
			ready_push(w, c);
			return;
		}
		uint64_t want = (free_bytes - 2ull * w->max_rec) / REC_EXPANSION;
		if (want > READ_MAX)
			want = READ_MAX;
		ssize_t n = recv(c->fd, w->rbuf, (size_t)want, 0);
		if (n > 0) {
			c->last_active_ms = w->now_ms;
			shm_count(&w->ctr[IC_BYTES_IN], (uint64_t)n);
			if (process(w, c, w->rbuf, (size_t)n) < 0)
				return;
			continue;
		}
		if (n == 0) {
			/* the peer may have only shut its side: acks still go out */
			c->eof = 1;
			if (c->in_ack_list)
				return;
			conn_close(w, c, NULL);
			return;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == EINTR)
			continue;
		char why[96];
		snprintf(why, sizeof(why), "recv: %s", strerror(errno));
		conn_close(w, c, errno == ECONNRESET ? NULL : why);
		return;
	}
	ready_push(w, c);
}

static int flush_wbuf(struct worker *w, struct conn *c)
{
	while (c->wlen) {
		ssize_t n = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
		c->wlen -= (uint32_t)n;
	}
	pool_put(w->pool, c->wbuf, c->wcap);
	c->wbuf = NULL;
	c->wcap = 0;
	return 0;
}

void conn_on_writable(struct worker *w, struct conn *c)
{
	if (!c->wlen)
		return;
	int r = flush_wbuf(w, c);
	if (r < 0) {
		char why[96];
		snprintf(why, sizeof(why), "send: %s", strerror(-r));
		conn_close(w, c, r == -EPIPE || r == -ECONNRESET ? NULL : why);
	}
}

int conn_send(struct worker *w, struct conn *c, const void *buf, size_t len)
{
	if (c->state == CS_CLOSING)
		return -1;
	size_t off = 0;
	if (!c->wlen) {
		for (;;) {
			ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n >= 0) {
				off = (size_t)n;
				break;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			char why[96];
			int e = errno;
			snprintf(why, sizeof(why), "send: %s", strerror(e));
			conn_close(w, c, e == EPIPE || e == ECONNRESET ? NULL : why);
			return -1;
		}
		if (off == len)
			return 0;
	}
	size_t rest = len - off;
	if ((size_t)c->wlen + rest > WBUF_MAX) {
		conn_close(w, c, "peer does not read its acks (output buffer full)");
		return -1;
	}
	if (pool_grow(w->pool, &c->wbuf, &c->wcap, c->wlen, c->wlen + (uint32_t)rest) < 0) {
		conn_close(w, c, "out of memory for output");
		return -1;
	}
	memcpy(c->wbuf + c->wlen, (const uint8_t *)buf + off, rest);
	c->wlen += (uint32_t)rest;
	return 0;
}
