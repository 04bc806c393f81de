/* mi_client — device-side client of wire protocol v1 (blocking API).
 *
 * One mic_t is one device talking to one server over TCP.  mic_send() gives
 * each frame the next seq, copies it into a preallocated window (one byte
 * ring + one entry ring: no allocation per frame) and queues it; queued frames
 * go out in batches, one sendmsg() per batch.  ACKs release the window up to
 * their seq.  When the connection is lost, send/flush reconnect with backoff,
 * redo the handshake and resend exactly the window's frames above the seq the
 * WELCOME reports as durable, so the server stores each frame once.
 *
 * Seqs: on the first connect the next seq is max(opts.start_seq,
 * WELCOME seq + 1); it is never changed afterwards, so mic_next_seq() tells
 * the seq the next mic_send() will use.  A NACKed frame is final: it is
 * counted, reported (on_nack, mic_stats) and never resent.
 *
 * Errors: 0 or a negative errno, or -MIC_E* below; mic_last_error() then
 * names what failed (peer host:port, device, NACK reason).  Not thread-safe:
 * one thread per mic_t.
 *
 * Keys mode (server [auth] mode = keys): set opts.key to the device's 32-byte
 * key (and opts.fingerprint when the registry holds one).  The handshake is
 * then HELLO -> CHALLENGE -> AUTH (proof) -> WELCOME, and the server's proof
 * in WELCOME is verified: a wrong one, or a WELCOME without CHALLENGE, is
 * -MIC_EAUTH.  Without a key, a server that answers CHALLENGE gets -MIC_EKEYS.
 * With opts.mac too, every DATA frame ends with the 16-byte per-frame MAC
 * (flags bit 1, keyed with the session key; docs/PROTOCOL.md); frames resent
 * after a reconnect are MACed again with the new session's key.  The MAC
 * counts against the server's max frame.
 *
 * Sealed frames (opts.seal, with opts.key; not with opts.mac): every DATA
 * payload is encrypted and authenticated with XChaCha20-Poly1305 (flags bit
 * 2, bit 1 clear; docs/PROTOCOL.md "Sealed DATA"): key = the session key,
 * nonce = the server nonce Ns of the session's CHALLENGE || u64 LE seq, AD =
 * header bytes 0..11 || 16..31; the payload becomes ciphertext || 16-byte
 * tag, which counts against the server's max frame like the MAC.  Frames
 * are sealed in place in the window (no copy, no allocation); after a
 * reconnect each frame to resend is opened with the old session's key and
 * nonce and sealed again with the new ones, so the plaintext is never lost
 * and no (key, nonce) pair seals two frames.  mic_seal_frame() below is the
 * same sealing as a pure function (tests, other senders).
 */
#ifndef MI_CLIENT_H
#define MI_CLIENT_H
#include <stddef.h>
#include <stdint.h>

enum mic_err {
	MIC_ENACK = 2000, /* frame(s) refused by the server since the last flush */
	MIC_EAUTH,        /* handshake refused with a NACK (final) */
	MIC_EKEYS,        /* server wants keys-mode authentication and no key was given */
	MIC_EPROTO,       /* server broke the protocol (bad framing, unexpected frame) */
	MIC_ECLOSED,      /* server closed the connection (EOF or BYE) */
	MIC_EBUSY,        /* server answered HELLO with NACK overloaded */
	MIC_ESEQ,         /* server's durable seq is ahead of ours: device used elsewhere */
	MIC_EMAX
};

struct mic_opts {
	const char *host;       /* NULL: "127.0.0.1" */
	uint16_t port;          /* 0: 7400 */
	const char *device;     /* required: 1..64 bytes of [A-Za-z0-9._:-] */
	uint16_t topic;         /* used when mic_send() is given topic 0 */
	uint64_t start_seq;     /* lowest first seq (e.g. boot_epoch << 32); 0: none */
	uint32_t window_frames; /* unacked frames kept; 0: 4096 */
	uint32_t window_bytes;  /* bytes for them, headers included; 0: 4 MiB */
	uint32_t batch_bytes;   /* queued bytes that trigger a write; 0: 64 KiB */
	int linger_us;          /* oldest queued frame age that triggers a write;
				 * 0: 1000; < 0: write every frame at once */
	int connect_timeout_ms; /* one connect + handshake attempt; 0: 5000 */
	int ack_timeout_ms;     /* frames outstanding and nothing received for
				 * this long: the connection is dead; 0: 15000 */
	int retry_deadline_ms;  /* send/flush reconnect until nothing was acked for
				 * this long; 0: 60000; < 0: never reconnect */
	int retry_attempts;     /* connection attempts per outage; 0: unlimited */
	int backoff_min_ms;     /* 0: 20 */
	int backoff_max_ms;     /* 0: 1000 */
	const uint8_t *key;         /* 32 bytes: keys mode (copied by mic_new); NULL: open */
	const uint8_t *fingerprint; /* 32 bytes sent in HELLO (flags bit 0); NULL: none */
	int mac;                    /* with key: append the per-frame MAC to every DATA */
	int seal;                   /* with key: seal every DATA payload (flags bit 2);
				     * mic_new: -EINVAL without key or with mac */
	/* Called once per NACKed DATA frame (reason is NUL-terminated). */
	void (*on_nack)(void *arg, uint64_t seq, unsigned code, const char *reason);
	void *on_nack_arg;
};

struct mic_stats {
	uint64_t sent;        /* frames accepted by mic_send() */
	uint64_t acked;       /* frames acknowledged (ACK, or WELCOME seq) */
	uint64_t resent;      /* retransmissions after reconnects */
	uint64_t nacked;      /* frames refused by the server (final) */
	uint64_t reconnects;  /* successful handshakes after the first */
	uint64_t conn_errors; /* failed connection attempts + connections lost */
	uint64_t writes;      /* sendmsg() calls carrying DATA */
	uint64_t welcome_behind; /* WELCOMEs whose seq was below one already
				  * acked: the server lost acknowledged frames */
	uint64_t welcome_seq; /* seq of the last WELCOME */
	uint64_t ack_seq;     /* highest seq acknowledged */
	uint64_t next_seq;    /* seq the next mic_send() will use (0: not yet known) */
	uint32_t in_window;   /* frames neither acked nor nacked yet */
	uint32_t max_frame;   /* server's payload limit (0 before the first WELCOME) */
	uint64_t last_nack_seq;
	unsigned last_nack_code; /* 0: no NACK yet */
	char last_nack_reason[128];
};

typedef struct mic mic_t;

/* Allocates the client and its window; no I/O.  *ret written on success. */
int mic_new(const struct mic_opts *opts, mic_t **ret);
/* Connects and handshakes, retrying with backoff for up to timeout_ms
 * (0: one attempt).  0 at once when already connected. */
int mic_connect(mic_t *c, int timeout_ms);
/* Drops the current connection (if any) and makes one attempt to connect,
 * handshake and queue the window's frames that the WELCOME does not cover. */
int mic_reconnect(mic_t *c);
/* Queues one DATA frame with the next seq and ts_ns = now (CLOCK_REALTIME);
 * topic 0 means opts.topic.  Blocks (reading ACKs, reconnecting) while the
 * window is full.  0 means queued, not acknowledged: see mic_flush(). */
int mic_send(mic_t *c, uint16_t topic, const void *payload, uint32_t len);
/* Same with an explicit timestamp (0: the server stamps it); *ret_seq, when
 * not NULL, receives the seq given to the frame. */
int mic_send_ts(mic_t *c, uint16_t topic, uint64_t ts_ns, const void *payload,
		uint32_t len, uint64_t *ret_seq);
/* Writes what is queued and processes what arrived, waiting up to timeout_ms
 * (0: no wait).  Does not reconnect: a lost connection is returned and the
 * next send/flush reconnects. */
int mic_poll(mic_t *c, int timeout_ms);
/* Waits until every queued frame is acked or nacked, reconnecting as needed,
 * for at most timeout_ms (< 0: only the retry deadline bounds it).  Returns
 * -MIC_ENACK when frames were NACKed since the last flush. */
int mic_flush(mic_t *c, int timeout_ms);
/* Sends BYE when connected, closes and frees.  Does not flush.  NULL is ok. */
void mic_close(mic_t *c);

uint64_t mic_next_seq(const mic_t *c);
void mic_get_stats(const mic_t *c, struct mic_stats *ret);
/* Describes the last failure with its context; "" when none. */
const char *mic_last_error(const mic_t *c);
/* err as returned (negative errno or -MIC_E*). */
const char *mic_strerror(int err);

#define MIC_SEAL_TAG_LEN 16   /* Poly1305 tag ending a sealed payload */
#define MIC_SEAL_NS_LEN 16    /* server nonce Ns (CHALLENGE payload) */
#define MIC_SEAL_KEY_LEN 32   /* session key */
/* Builds one sealed DATA frame into out (docs/PROTOCOL.md "Sealed DATA"):
 * header type DATA, flags MI_F_SEALED (bit 2 only), topic, seq, ts_ns, len =
 * len + MIC_SEAL_TAG_LEN; payload = crypto_aead_xchacha20poly1305_ietf_encrypt
 * of pt[0..len) with nonce = ns || u64 LE seq, AD = header bytes 0..11 ||
 * 16..31, key = the session key; then pcrc over the sealed payload, then
 * hcrc.  pt may be out + 36 (sealing in place); otherwise it must not
 * overlap out.  Deterministic: same inputs, same bytes.  Returns the frame
 * length (36 + len + MIC_SEAL_TAG_LEN), or 0 when cap is too small. */
size_t mic_seal_frame(uint8_t *out, size_t cap, const uint8_t key[MIC_SEAL_KEY_LEN],
		      const uint8_t ns[MIC_SEAL_NS_LEN], uint16_t topic, uint64_t seq, uint64_t ts_ns,
		      const void *pt, uint32_t len);
#endif
