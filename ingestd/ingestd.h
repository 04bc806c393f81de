/* ingestd internals shared by its files (not a library API).
 *
 * One worker = one epoll loop, one ring, single-threaded.  flusherd's
 * durable futex reaches the loop as an eventfd wake-up, signalled by an
 * io_uring futex wait or, where the kernel cannot, by a notifier thread.
 *
 * Backpressure without a stash: a read takes at most (free ring bytes -
 * two max records) / REC_EXPANSION bytes.  A record is never more than
 * REC_EXPANSION times the wire bytes it came from; one max record covers
 * the frame an earlier read began (its bytes came mostly from before) and
 * the other the pad a record may leave at the ring's end, so every frame
 * decoded from a read fits the ring.  When the ring has no room for a
 * minimum read, the connection goes on the ready list and the worker sets
 * ring_full: the list is retried on flusherd's next durable publication
 * (which releases space), not polled.
 */
#ifndef MI_INGESTD_H
#define MI_INGESTD_H
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "bpf/loader.h"
#include "common/frame.h"
#include "common/keys.h"
#include "common/pool.h"
#include "common/settings.h"
#include "shm/futex_poll.h"
#include "shm/ring.h"
#include "shm/shm.h"

/* 36-byte frame header -> 40 + 64 (id) + 7 (pad) byte record: < 4x */
#define REC_EXPANSION 4
#define READ_MAX (256u << 10)
#define READ_MIN (4u << 10)
#define READ_BUDGET 4            /* reads per connection per loop pass (fairness) */
#define WBUF_MAX (256u << 10)    /* a peer that does not read its acks is closed */
#define UDP_BATCH 32             /* datagrams per recvmmsg */

enum filter_mode { FILTER_MODE_USER, FILTER_MODE_CLASSIC, FILTER_MODE_EBPF };

enum conn_state {
	CS_NEW,          /* nothing received yet: binary or NDJSON decided by the first byte */
	CS_AWAIT_HELLO,  /* binary, no session */
	CS_AWAIT_AUTH,   /* keys mode: CHALLENGE sent, c->hs holds the handshake */
	CS_SESSION,      /* HELLO (open) or AUTH (keys) done: DATA accepted */
	CS_NDJSON,
	CS_CLOSING,
};

struct conn {
	int fd;
	uint8_t state;
	uint8_t in_ack_list;
	uint8_t in_ready_list;    /* unread input left (budget or ring space) */
	uint8_t eof;
	uint8_t ack_again;        /* a retry of an acked seq: repeat the ACK */
	uint8_t keyed;            /* keys mode session: sess_key is set */
	int32_t slot;             /* device-table slot, -1 before HELLO */
	struct handshake *hs;     /* keys mode, between HELLO and AUTH only */
	uint64_t hi_seq;          /* highest DATA seq received on this connection */
	uint64_t acked_seq;       /* highest seq ACKed */
	uint64_t last_active_ms;
	uint64_t accepted_ms;
	struct conn *ack_next, *ack_prev;
	struct conn *ready_next;
	uint8_t *wbuf;            /* unsent output (pool), NULL when none */
	uint32_t wlen, wcap;
	uint8_t *line;            /* NDJSON partial line (pool) */
	uint32_t line_len, line_cap;
	uint32_t ndjson_lineno;
	struct sockaddr_in6 peer;
	struct mi_decoder dec;
	uint8_t sess_key[32];     /* keys mode: the key of per-frame MACs and seals */
	uint8_t seal_key[32];     /* keys mode: HChaCha20(sess_key, server nonce), the
				   * ChaCha20-Poly1305 key of every sealed frame */
	const struct keys_device *dev; /* keys mode session: its device in w->keys
					* (scopes, require=); re-pointed by auth_reload */
};

/* Keys mode: what AUTH is checked against, held only between HELLO and
 * AUTH (heap, wiped and freed when the handshake ends either way). */
struct handshake {
	uint8_t snonce[MI_NONCE_LEN];
	uint8_t cnonce[MI_NONCE_LEN];
	uint8_t fpr[MI_FPR_LEN];
	uint8_t has_fpr;
	uint8_t id_len;
	char id[MI_DEVID_MAX + 1];
};

struct worker {
	const struct settings *s;
	struct keys *keys;        /* device registry, keys mode only (else NULL) */
	int keys_mode;
	struct shm_ctl *ctl;
	uint64_t *ctr;
	struct ring_prod ring;
	uint32_t ring_id;
	int ep, lfd, efd;
	pool_t *pool;
	struct conn **conns;      /* by fd */
	int nconns_max_fd;
	uint32_t nconns;
	struct conn **by_slot;    /* live session per device slot */
	struct conn *ack_head;
	struct conn *ready_head;
	int ring_full;            /* a read waited for ring space: retry the
				   * ready list only once flusherd releases some */
	int ack_scan;             /* re-check the ack list this pass */
	uint64_t published;       /* ring head last published */
	uint64_t now_ms;
	uint64_t now_ns;          /* CLOCK_REALTIME of this pass: srv_ns for records */
	uint8_t *rbuf;
	uint8_t *open_buf;        /* keys mode: a sealed frame's plaintext (max_frame) */
	pthread_t notifier;       /* thread mode: sleeps on the durable futex */
	int ack_thread;           /* the notifier runs */
	int ack_uring;            /* io_uring mode: fpoll waits on the futex */
	struct futex_poll fpoll;
	uint32_t dur_seen;        /* durable sequence at the last ack_poll() */
	struct bpfl *bpf;         /* NULL unless the eBPF filters loaded */
	int filter_mode;          /* enum filter_mode */
	int tcp_filtered;         /* the listener's eBPF filter drops banned SYNs */
	int udp_fd;
	int udp_paused;           /* no ring room: out of the epoll interest */
	uint32_t udp_max_rec;     /* largest record a datagram can make */
	uint8_t *udp_buf;
	struct mmsghdr udp_msg[UDP_BATCH];
	struct iovec udp_iov[UDP_BATCH];
	struct sockaddr_in6 udp_from[UDP_BATCH];
	uint8_t udp_cmsg[UDP_BATCH][64];
	volatile int stopping;
	uint32_t max_rec;
};

/* worker.c */
struct addrinfo;
/* Resolves "host:port" ("[v6]:port" too) of config key [server] key. */
int addr_resolve(const char *key, const char *addr, int socktype, struct addrinfo **ret, char *err,
		 size_t errlen);
int worker_run(struct worker *w);
void conn_close(struct worker *w, struct conn *c, const char *why);
void conn_want_read(struct worker *w, struct conn *c);

/* conn.c */
void conn_on_readable(struct worker *w, struct conn *c);
void conn_on_writable(struct worker *w, struct conn *c);
/* Queues bytes for the peer: sent at once when the socket takes them.
 * Returns 0, or -1 when the connection is closed (c is then gone). */
int conn_send(struct worker *w, struct conn *c, const void *buf, size_t len);
const char *conn_peer(const struct conn *c, char *buf, size_t len);
uint64_t ring_free(const struct worker *w);

/* session.c */
/* Handles one decoded frame.  Returns 0, or -1 when the connection closed. */
int session_frame(struct worker *w, struct conn *c, const struct mi_frame *f);
int session_nack(struct worker *w, struct conn *c, uint64_t seq, enum mi_nack code, const char *reason);
/* Stores one record for a device.  Returns 0 or -ENOBUFS (ring full). */
int session_store(struct worker *w, int32_t slot, uint16_t topic, uint64_t seq, uint64_t ts_ns,
		  const void *payload, uint32_t len, uint32_t pcrc);
/* Ends the session and wipes the connection's handshake state and keys. */
void session_end(struct worker *w, struct conn *c);

/* auth.c */
/* Loads the keys file of s with its topic names resolved.  0 or -errno. */
int auth_load(const struct settings *s, struct keys **ret, char *err, size_t errlen);
/* SIGHUP: the keys file again; see auth.c.  Logs what it did. */
void auth_reload(struct worker *w);
/* What the keys file (require=, topics=) and [auth] require_mac say of an
 * authentic DATA frame of device d, over TCP or UDP. */
enum auth_verdict { AUTH_OK, AUTH_NEED_MAC, AUTH_NEED_SEAL, AUTH_TOPIC };
enum auth_verdict auth_frame_allowed(const struct worker *w, const struct keys_device *d, uint16_t flags,
				     uint16_t topic);

/* ack.c */
/* Makes flusherd's durable publications wake the loop through efd
 * ([server] ack_wakeup).  0, or -errno after logging why. */
int ack_start(struct worker *w);
/* After each epoll pass (fired: efd was read): keeps the wait queued;
 * returns 1 if a publication happened since the last call. */
int ack_poll(struct worker *w, int fired);
void ack_stop(struct worker *w);
void ack_track(struct worker *w, struct conn *c);
void ack_untrack(struct worker *w, struct conn *c);
/* Sends every ACK that the durable seqs allow. */
void ack_scan(struct worker *w);

/* udp.c */
/* Binds the UDP socket for addr.  Returns the fd or -errno with err set. */
int udp_open(struct worker *w, const char *addr, char *err, size_t errlen);
/* Reads what the ring has room for.  -ENOBUFS: room for no datagram, the
 * rest stays queued until flusherd releases space. */
int udp_on_readable(struct worker *w);

/* filter.c */
void filter_setup(struct worker *w);
void filter_close(struct worker *w);
/* A failed handshake or framing violation from a: may ban the source. */
void filter_failure(struct worker *w, const struct in6_addr *a);
/* Whether a is banned (checked at accept: eBPF drops its SYNs earlier). */
int filter_banned(struct worker *w, const struct in6_addr *a);
void filter_tick(struct worker *w);
/* A drop found in user space, into the same table as the kernel's. */
static inline void filter_count(struct worker *w, enum drop_reason r, uint32_t bytes)
{
	bpfl_count(w->bpf, r, bytes);
}

/* ndjson.c */
/* Consumes bytes of an NDJSON connection.  Returns 0 or -1 (closed). */
int ndjson_feed(struct worker *w, struct conn *c, const uint8_t *buf, size_t len);
#endif
