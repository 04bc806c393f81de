/* udp — one DATA frame per datagram, for the smallest devices.
 *
 * No handshake and no ACKs: the payload starts with u8 id_len and the
 * device id, then the data.  In keys mode the payload ends with a 16-byte
 * MAC keyed with the device's own key (the TCP per-frame MAC, over the
 * header and the id and data); it is checked before the device gets a
 * device-table slot and before the replay window is read or moved, so a
 * forged datagram can neither fill the table nor push the window past the
 * device's real seqs.  recvmmsg takes up to UDP_BATCH datagrams per
 * syscall, and only while the ring has room for all of them (a full ring
 * leaves them in the socket buffer, where the kernel drops and counts the
 * overflow: SO_RXQ_OVFL).  Replays are refused by a 64-wide sliding window
 * over seq per device (as IPsec does), kept in the shm device table so it
 * survives an ingestd restart.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/log.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

#define UDP_DGRAM_MAX 65536u

int udp_open(struct worker *w, const char *addr, char *err, size_t errlen)
{
	struct addrinfo *ai;
	int r = addr_resolve("udp_listen", addr, SOCK_DGRAM, &ai, err, errlen);
	if (r < 0)
		return r;
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, buf = (int)w->s->udp_rcvbuf;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		r = -errno;
		snprintf(err, errlen, "UDP on %s: %s", addr, strerror(-r));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return r;
	}
	freeaddrinfo(ai);
	/* FORCE goes past net.core.rmem_max when we may; else the capped size */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	uint64_t most = w->s->max_frame < UDP_DGRAM_MAX - MI_HDR_LEN ? w->s->max_frame : UDP_DGRAM_MAX - MI_HDR_LEN;
	w->udp_max_rec = rec_size(MI_DEVID_MAX, (uint32_t)most);
	w->udp_buf = malloc((size_t)UDP_BATCH * UDP_DGRAM_MAX);
	if (!w->udp_buf) {
		close(fd);
		snprintf(err, errlen, "UDP on %s: out of memory for the receive batch", addr);
		return -ENOMEM;
	}
	for (int i = 0; i < UDP_BATCH; i++) {
		w->udp_iov[i] = (struct iovec){ w->udp_buf + (size_t)i * UDP_DGRAM_MAX, UDP_DGRAM_MAX };
		w->udp_msg[i].msg_hdr = (struct msghdr){
			.msg_name = &w->udp_from[i], .msg_namelen = sizeof(w->udp_from[i]),
			.msg_iov = &w->udp_iov[i], .msg_iovlen = 1,
			.msg_control = w->udp_cmsg[i], .msg_controllen = sizeof(w->udp_cmsg[i]),
		};
	}
	return fd;
}

/* Moves a window of seqs below base up to a new base: the seqs in between
 * count as taken (UDP never fills what TCP or a restart skipped). */
static uint64_t window_rebase(uint64_t win, uint64_t base, uint64_t to)
{
	if (to < base)
		return ~0ull;              /* last_accepted went back (restart): refuse all below */
	uint64_t sh = to - base;
	if (sh == 0)
		return win;
	if (sh >= 64)
		return ~0ull;
	win = (win << sh) | ((1ull << sh) - 1);
	if (!base)
		win &= ~(1ull << (sh - 1));  /* seq 0 is not a seq */
	return win;
}

/* 64-wide sliding window: 1 when seq is new above last_accepted, 2 when new
 * below it, 0 for a replay or a seq too old to tell. */
static int window_take(struct shm_dev *d, uint64_t seq)
{
	uint64_t last = d->last_accepted;
	if (d->udp_base != last) {
		d->udp_window = window_rebase(d->udp_window, d->udp_base, last);
		d->udp_base = last;
	}
	if (seq > last) {
		uint64_t shift = seq - last;
		uint64_t win = shift >= 64 ? 0 : d->udp_window << shift;
		/* the old last_accepted becomes bit shift-1 (if it was a seq) */
		if (last && shift < 64)
			win |= 1ull << (shift - 1);
		d->udp_window = win;
		d->udp_base = seq;
		return 1;
	}
	/* 64 wide as IPsec counts it: the highest seq and the 63 below it */
	uint64_t back = last - seq;   /* 0: seq == last */
	if (back == 0 || back >= 64)
		return 0;
	uint64_t bit = 1ull << (back - 1);
	if (d->udp_window & bit)
		return 0;
	d->udp_window |= bit;
	return 2;   /* new, but below last_accepted: last_accepted stays */
}

static void drop(struct worker *w, enum drop_reason r, size_t bytes, const char *why, const struct sockaddr_in6 *from)
{
	shm_count(&w->ctr[IC_UDP_DROPPED], 1);
	filter_count(w, r, (uint32_t)bytes);
	if (log_enabled(LOG_DEBUG)) {
		char a[INET6_ADDRSTRLEN] = "?";
		if (from->sin6_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)from)->sin_addr, a, sizeof(a));
		else
			inet_ntop(AF_INET6, &from->sin6_addr, a, sizeof(a));
		log_debug("UDP datagram from %s dropped: %s", a, why);
	}
}

/* Keys mode: the last 16 bytes of the payload must be the MAC of the header
 * and the rest of the payload (id_len, id, data) keyed with the device's
 * own key.  An unknown or disabled device costs the same work (its MAC is
 * computed with a dummy key): the time taken does not tell which ids
 * exist.  0 when it verifies, else the datagram is dropped and -1. */
static int verify_mac(struct worker *w, const struct mi_hdr *h, const uint8_t *pl, size_t n,
		      const struct sockaddr_in6 *from)
{
	static const uint8_t dummy_key[KEYS_KEY_LEN] = { 0x4d, 0x49, 0x55 };
	uint8_t id_len = pl[0];
	const struct keys_device *d = keys_find(w->keys, (const char *)pl + 1, id_len);
	int known = d && d->enabled;
	uint8_t mac[MI_MAC_LEN];
	uint32_t mlen = h->len - MI_MAC_LEN;
	mi_frame_mac(mac, known ? d->key : dummy_key, h, pl, mlen);
	int ok = crypto_verify_16(mac, pl + mlen) == 0;   /* constant time */
	sodium_memzero(mac, sizeof(mac));
	if (known && ok) {
		/* after the MAC, the keys file's rules, as over TCP: UDP is never
		 * sealed, and its MAC meets any MAC requirement */
		enum auth_verdict v = auth_frame_allowed(w, d, h->flags, h->topic);
		if (v == AUTH_NEED_SEAL || v == AUTH_NEED_MAC)
			drop(w, DROP_AUTH, n, "device must seal (require=seal) and UDP cannot", from);
		else if (v == AUTH_TOPIC)
			drop(w, DROP_TOPIC, n, "topic not in the device's scopes", from);
		return v == AUTH_OK ? 0 : -1;
	}
	char why[MI_DEVID_MAX + 64];
	if (log_enabled(LOG_DEBUG))
		snprintf(why, sizeof(why), "device '%.*s': %s", (int)id_len, (const char *)pl + 1,
			 !d ? "unknown device ([auth] keys_file)" : !d->enabled ? "device disabled" : "MAC does not verify");
	else
		why[0] = 0;
	if (!known) {
		drop(w, DROP_AUTH, n, why, from);
	} else {
		shm_count(&w->ctr[IC_UDP_BAD_MAC], 1);
		drop(w, DROP_BAD_MAC, n, why, from);
	}
	return -1;
}

static void one_datagram(struct worker *w, const uint8_t *p, size_t n, const struct sockaddr_in6 *from)
{
	struct mi_hdr h;
	if (n < MI_HDR_LEN || mi_hdr_decode(p, &h) < 0)
		return drop(w, n < MI_HDR_LEN ? DROP_SHORT : DROP_MALFORMED, n, n < MI_HDR_LEN ? "shorter than a header" : "bad header", from);
	if (h.type != MI_DATA)
		return drop(w, DROP_BAD_TYPE, n, "not a DATA frame", from);
	if ((size_t)h.len != n - MI_HDR_LEN)
		return drop(w, DROP_BAD_LENGTH, n, "len does not match the datagram", from);
	if (h.len > w->s->max_frame)
		return drop(w, DROP_TOO_LARGE, n, "over max_frame", from);
	const uint8_t *pl = p + MI_HDR_LEN;
	if (mi_crc32(pl, h.len) != h.pcrc)
		return drop(w, DROP_BAD_PCRC, n, "payload checksum mismatch", from);
	if (w->keys_mode) {
		if (h.flags & MI_F_SEALED)
			return drop(w, DROP_AUTH, n, "[auth] mode = keys: sealed UDP datagrams are not supported", from);
		if (!(h.flags & MI_F_MAC))
			return drop(w, DROP_AUTH, n, "[auth] mode = keys: UDP datagram without a MAC (flags bit 1)", from);
	} else if (h.flags & (MI_F_MAC | MI_F_SEALED)) {
		return drop(w, DROP_MALFORMED, n, "MAC and sealed frames need [auth] mode = keys", from);
	}
	if (h.seq == 0)
		return drop(w, DROP_MALFORMED, n, "seq 0", from);
	uint32_t mac_len = w->keys_mode ? MI_MAC_LEN : 0;
	if (h.len < 1 || h.len < 1u + pl[0] || !mi_devid_valid(pl + 1, pl[0]))
		return drop(w, DROP_MALFORMED, n, "no valid device id at the start of the payload", from);
	uint8_t id_len = pl[0];
	if (h.len - 1u - id_len < mac_len)
		return drop(w, DROP_MALFORMED, n, "shorter than the device id and its 16-byte MAC", from);
	if (w->keys_mode && verify_mac(w, &h, pl, n, from) < 0)
		return;
	int slot = devtab_insert(w->ctl, pl + 1, id_len);
	if (slot < 0)
		return drop(w, DROP_AUTH, n, "device table full", from);
	struct shm_dev *d = shm_dev(w->ctl, (uint32_t)slot);
	uint64_t win = d->udp_window, base = d->udp_base;
	int t = window_take(d, h.seq);
	if (!t) {
		shm_count(&w->ctr[IC_UDP_REPLAYED], 1);
		return drop(w, DROP_REPLAY, n, "replayed or too old seq", from);
	}
	uint64_t last = d->last_accepted;
	const uint8_t *data = pl + 1 + id_len;
	uint32_t dlen = h.len - 1 - id_len - mac_len;   /* the MAC is not stored */
	if (session_store(w, slot, h.topic, h.seq, h.ts_ns, data, dlen, mi_crc32(data, dlen)) < 0) {
		d->udp_window = win;   /* not taken after all */
		d->udp_base = base;
		shm_count(&w->ctr[IC_UDP_RING_FULL], 1);
		filter_count(w, DROP_RING_FULL, (uint32_t)n);
		return;
	}
	/* session_store raised last_accepted to seq; a late seq keeps the max */
	if (t == 2)
		shm_store_release(&d->last_accepted, last);
	shm_count(&w->ctr[IC_UDP_STORED], 1);
}

int udp_on_readable(struct worker *w)
{
	for (int rounds = 0; rounds < 16; rounds++) {
		/* a max-size record per datagram read, and one more for the pad
		 * at the ring's end: what does not fit stays queued */
		uint64_t fit = ring_free(w) / w->udp_max_rec;
		if (fit < 2)
			return -ENOBUFS;
		unsigned want = fit - 1 < UDP_BATCH ? (unsigned)(fit - 1) : UDP_BATCH;
		int n = recvmmsg(w->udp_fd, w->udp_msg, want, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return 0;
		shm_count(&w->ctr[IC_UDP_DATAGRAMS], (uint64_t)n);
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &w->udp_msg[i].msg_hdr;
			for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
				if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
					uint32_t ovfl;
					memcpy(&ovfl, CMSG_DATA(c), sizeof(ovfl));
					/* a running total of the socket's drops */
					shm_store_relaxed(&w->ctr[IC_UDP_RXQ_OVFL], ovfl);
				}
			one_datagram(w, w->udp_buf + (size_t)i * UDP_DGRAM_MAX, w->udp_msg[i].msg_len, &w->udp_from[i]);
			mh->msg_namelen = sizeof(w->udp_from[i]);
			mh->msg_controllen = sizeof(w->udp_cmsg[i]);
		}
		if ((unsigned)n < want)
			return 0;
	}
	return 0;
}
