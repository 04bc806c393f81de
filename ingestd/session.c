/* session — what each frame means: HELLO (and in keys mode CHALLENGE/AUTH),
 * DATA and the seq rules, NACKs. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fault.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/record.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

static const enum ingestd_ctr nack_ctr[MI_NACK_MAX] = {
	[MI_NACK_CRC] = IC_NACK_CRC, [MI_NACK_TOO_LARGE] = IC_NACK_TOO_LARGE,
	[MI_NACK_SEQ] = IC_NACK_SEQ, [MI_NACK_NOT_AUTH] = IC_NACK_NOT_AUTH,
	[MI_NACK_MALFORMED] = IC_NACK_MALFORMED, [MI_NACK_OVERLOADED] = IC_NACK_OVERLOADED,
	[MI_NACK_TOPIC] = IC_NACK_TOPIC, [MI_NACK_AUTH_FAILED] = IC_NACK_AUTH_FAILED,
};

int session_nack(struct worker *w, struct conn *c, uint64_t seq, enum mi_nack code, const char *reason)
{
	uint8_t buf[MI_HDR_LEN + 2 + 200];
	uint8_t pl[2 + 200];
	size_t rl = strlen(reason);
	if (rl > 200)
		rl = 200;
	mi_put16(pl, (uint16_t)code);
	memcpy(pl + 2, reason, rl);
	size_t n = mi_frame_build(buf, sizeof(buf), MI_NACK, 0, 0, seq, 0, pl, (uint32_t)(2 + rl));
	shm_count(&w->ctr[IC_NACKS_SENT], 1);
	if (code < MI_NACK_MAX && nack_ctr[code])
		shm_count(&w->ctr[nack_ctr[code]], 1);
	return conn_send(w, c, buf, n);
}

/* NACK, then close: for HELLOs and AUTHs that cannot become a session. */
static int refuse(struct worker *w, struct conn *c, enum mi_nack code, const char *reason)
{
	char why[256];
	filter_failure(w, &c->peer.sin6_addr);
	if (session_nack(w, c, 0, code, reason) < 0)
		return -1;
	snprintf(why, sizeof(why), "handshake refused: %s", reason);
	conn_close(w, c, why);
	return -1;
}

static void hs_free(struct conn *c)
{
	if (c->hs) {
		sodium_memzero(c->hs, sizeof(*c->hs));
		free(c->hs);
		c->hs = NULL;
	}
}

/* The device is known (open mode: any valid id; keys mode: proven): take
 * its device-table slot, close an older session of it, send WELCOME with
 * the last durable seq and proof (NULL: zeros, open mode). */
static int start_session(struct worker *w, struct conn *c, const void *id, uint8_t id_len,
			 const uint8_t proof[MI_PROOF_LEN])
{
	int slot = devtab_insert(w->ctl, id, id_len);
	if (slot < 0)
		return refuse(w, c, MI_NACK_OVERLOADED, "device table full ([shm] devices)");
	struct conn *old = w->by_slot[slot];
	if (old && old != c) {
		shm_count(&w->ctr[IC_SESSION_TAKEOVER], 1);
		conn_close(w, old, "session taken over by a new HELLO for the same device");
	}
	w->by_slot[slot] = c;
	c->slot = slot;
	c->state = CS_SESSION;
	c->hi_seq = c->acked_seq = 0;

	struct shm_dev *d = shm_dev(w->ctl, (uint32_t)slot);
	uint8_t pl[4 + MI_PROOF_LEN];
	uint8_t buf[MI_HDR_LEN + sizeof(pl)];
	memset(pl, 0, sizeof(pl));
	mi_put32(pl, (uint32_t)w->s->max_frame);
	if (proof)
		memcpy(pl + 4, proof, MI_PROOF_LEN);
	size_t n = mi_frame_build(buf, sizeof(buf), MI_WELCOME, 0, 0, shm_load_acquire(&d->last_durable), 0, pl,
				  sizeof(pl));
	return conn_send(w, c, buf, n) < 0 ? -1 : 0;
}

/* keyed BLAKE2b-256 over label || server nonce || client nonce [|| id [|| fpr]] */
static void kdf(uint8_t out[32], const uint8_t key[KEYS_KEY_LEN], const char *label, const struct handshake *hs,
		int with_id)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, KEYS_KEY_LEN, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, hs->snonce, MI_NONCE_LEN);
	crypto_generichash_update(&st, hs->cnonce, MI_NONCE_LEN);
	if (with_id) {
		crypto_generichash_update(&st, (const uint8_t *)hs->id, hs->id_len);
		if (hs->has_fpr)
			crypto_generichash_update(&st, hs->fpr, MI_FPR_LEN);
	}
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

/* Keys mode HELLO: remember the handshake, answer CHALLENGE with a fresh
 * server nonce.  Known or not, every device id gets the same answer. */
static int send_challenge(struct worker *w, struct conn *c, const struct mi_frame *f)
{
	const uint8_t *p = f->payload;
	struct handshake *hs = calloc(1, sizeof(*hs));
	if (!hs)
		return refuse(w, c, MI_NACK_OVERLOADED, "out of memory for the handshake");
	hs->id_len = p[0];
	memcpy(hs->id, p + 1, hs->id_len);
	memcpy(hs->cnonce, p + 1 + hs->id_len, MI_NONCE_LEN);
	if (f->h.flags & MI_F_FPR) {
		hs->has_fpr = 1;
		memcpy(hs->fpr, p + 1 + hs->id_len + MI_NONCE_LEN, MI_FPR_LEN);
	}
	randombytes_buf(hs->snonce, MI_NONCE_LEN);
	c->hs = hs;
	c->state = CS_AWAIT_AUTH;
	uint8_t buf[MI_HDR_LEN + MI_NONCE_LEN];
	size_t n = mi_frame_build(buf, sizeof(buf), MI_CHALLENGE, 0, 0, 0, 0, hs->snonce, MI_NONCE_LEN);
	return conn_send(w, c, buf, n) < 0 ? -1 : 0;
}

static int on_hello(struct worker *w, struct conn *c, const struct mi_frame *f)
{
	const uint8_t *p = f->payload;
	shm_count(&w->ctr[IC_HELLO], 1);
	if (c->state == CS_SESSION || c->state == CS_AWAIT_AUTH)
		return session_nack(w, c, 0, MI_NACK_MALFORMED,
				    c->state == CS_SESSION ? "HELLO on a connection that already has a session"
							   : "HELLO on a connection whose handshake is under way") < 0 ? -1 : 0;
	if (!f->pcrc_ok)
		return refuse(w, c, MI_NACK_CRC, "HELLO payload checksum mismatch");
	if (f->h.len < 1)
		return refuse(w, c, MI_NACK_MALFORMED, "HELLO without a device id");
	uint32_t id_len = p[0];
	uint32_t need = 1 + id_len + MI_NONCE_LEN + ((f->h.flags & MI_F_FPR) ? MI_FPR_LEN : 0);
	if (id_len == 0)
		return refuse(w, c, MI_NACK_MALFORMED, "HELLO with an empty device id");
	if (f->h.len != need)
		return refuse(w, c, MI_NACK_MALFORMED, "HELLO payload length does not match id_len, nonce and flags");
	if (!mi_devid_valid(p + 1, id_len))
		return refuse(w, c, MI_NACK_MALFORMED, "device id must be 1-64 bytes of [A-Za-z0-9._:-]");
	if (w->keys_mode)
		return send_challenge(w, c, f);
	return start_session(w, c, p + 1, (uint8_t)id_len, NULL);
}

/* Keys mode AUTH.  Unknown device, disabled device, fingerprint mismatch
 * and wrong proof do the same work (an unknown device's proof is computed
 * with a dummy key) and get the same NACK: no oracle for device ids. */
static int on_auth(struct worker *w, struct conn *c, const struct mi_frame *f)
{
	static const uint8_t dummy_key[KEYS_KEY_LEN] = { 0x4d, 0x49, 0x31 };
	static const uint8_t dummy_fpr[KEYS_FPR_LEN];
	if (c->state != CS_AWAIT_AUTH || !c->hs)
		return session_nack(w, c, f->h.seq, MI_NACK_MALFORMED,
				    w->keys_mode ? "AUTH without a CHALLENGE" : "AUTH in open mode ([auth] mode = open)") < 0
			       ? -1
			       : 0;
	if (!f->pcrc_ok)
		return refuse(w, c, MI_NACK_CRC, "AUTH payload checksum mismatch");
	if (f->h.len != MI_PROOF_LEN)
		return refuse(w, c, MI_NACK_MALFORMED, "AUTH payload must be the 32-byte proof");
	struct handshake *hs = c->hs;
	const struct keys_device *d = keys_find(w->keys, hs->id, hs->id_len);
	const uint8_t *key = d ? d->key : dummy_key;
	uint8_t want[MI_PROOF_LEN];
	kdf(want, key, "MI1-auth", hs, 1);
	int proof_ok = sodium_memcmp(want, f->payload, MI_PROOF_LEN) == 0;
	/* the same comparison whether or not the device has a fingerprint */
	int fpr_eq = sodium_memcmp(d && d->has_fpr ? d->fpr : dummy_fpr, hs->fpr, KEYS_FPR_LEN) == 0;
	int fpr_ok = !d || !d->has_fpr || (hs->has_fpr && fpr_eq);
	sodium_memzero(want, sizeof(want));
	if (!d || !d->enabled || !fpr_ok || !proof_ok) {
		char why[160];
		snprintf(why, sizeof(why), "AUTH refused for device '%s': %s", hs->id,
			 !d ? "unknown device" : !d->enabled ? "device disabled" : !fpr_ok ? "fingerprint mismatch"
											 : "wrong proof");
		hs_free(c);
		shm_count(&w->ctr[IC_AUTH_FAILED], 1);
		filter_failure(w, &c->peer.sin6_addr);
		if (session_nack(w, c, 0, MI_NACK_AUTH_FAILED, "authentication failed") < 0)
			return -1;
		conn_close(w, c, why);
		return -1;
	}
	uint8_t srv[MI_PROOF_LEN];
	kdf(srv, d->key, "MI1-srv", hs, 1);
	kdf(c->sess_key, d->key, "MI1-sess", hs, 0);
	/* the XChaCha20 subkey: its nonce's first 16 bytes are the server
	 * nonce for the whole session, so it is derived once, not per frame */
	crypto_core_hchacha20(c->seal_key, hs->snonce, c->sess_key, NULL);
	c->keyed = 1;
	c->dev = d;
	shm_count(&w->ctr[IC_AUTH_OK], 1);
	char id[MI_DEVID_MAX + 1];
	uint8_t id_len = hs->id_len;
	memcpy(id, hs->id, sizeof(id));
	hs_free(c);
	int r = start_session(w, c, id, id_len, srv);
	sodium_memzero(srv, sizeof(srv));
	return r;
}

int session_store(struct worker *w, int32_t slot, uint16_t topic, uint64_t seq, uint64_t ts_ns,
		  const void *payload, uint32_t len, uint32_t pcrc)
{
	struct shm_dev *d = shm_dev(w->ctl, (uint32_t)slot);
	void *rec = ring_reserve(&w->ring, rec_size(d->id_len, len));
	if (!rec)
		return -ENOBUFS;
	rec_build_data(rec, d->id, d->id_len, topic, (uint32_t)slot, seq, ts_ns ? ts_ns : w->now_ns, w->now_ns,
		       payload, len, pcrc);
	/* published with the ring head at the end of this loop pass; a crash
	 * before that is reconciled at start-up from the ring itself */
	shm_store_release(&d->last_accepted, seq);
	fault_point("ingestd.after_store");
	shm_count(&w->ctr[IC_FRAMES_STORED], 1);
	return 0;
}

/* XChaCha20-Poly1305 (docs/PROTOCOL.md, Sealed DATA): nonce = the session's
 * server nonce || seq (u64 LE); AD = the header but its two CRCs.  XChaCha20
 * is ChaCha20 under the subkey HChaCha20(key, nonce[0..16)) with the IETF
 * nonce 0^4 || nonce[16..24), and libsodium builds it just so: with the
 * subkey kept from WELCOME (c->seal_key) a frame costs the IETF open alone,
 * a fifth less.  The plaintext lands in w->open_buf.  0, or -1 when the tag
 * does not verify. */
static int open_sealed(struct worker *w, struct conn *c, const struct mi_frame *f)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = { 0 }, ad[MI_AAD_LEN];
	_Static_assert(sizeof(nonce) == 4 + 8, "IETF nonce = 0^4 || seq");
	mi_put64(nonce + 4, f->h.seq);
	mi_hdr_aad(&f->h, ad);
	unsigned long long mlen;
	return crypto_aead_chacha20poly1305_ietf_decrypt(w->open_buf, &mlen, NULL, f->payload, f->h.len, ad,
							 sizeof(ad), nonce, c->seal_key);
}

static int on_data(struct worker *w, struct conn *c, const struct mi_frame *f)
{
	const struct mi_hdr *h = &f->h;
	if (c->state != CS_SESSION)
		return session_nack(w, c, h->seq, MI_NACK_NOT_AUTH,
				    w->keys_mode ? "not authenticated: DATA before AUTH completed" : "DATA before HELLO") < 0
			       ? -1
			       : 0;
	if (!f->pcrc_ok) {
		filter_count(w, DROP_BAD_PCRC, MI_HDR_LEN + h->len);
		return session_nack(w, c, h->seq, MI_NACK_CRC, "payload checksum mismatch") < 0 ? -1 : 0;
	}
	/* the device's data: the payload without the MAC, or opened */
	const uint8_t *data = f->payload;
	uint32_t dlen = h->len, dcrc = h->pcrc;
	if ((h->flags & (MI_F_MAC | MI_F_SEALED)) && (!w->keys_mode || !c->keyed))
		return session_nack(w, c, h->seq, MI_NACK_MALFORMED, "MAC and sealed frames need [auth] mode = keys") < 0
			       ? -1
			       : 0;
	if (h->flags & MI_F_SEALED) {
		if (h->flags & MI_F_MAC)
			return session_nack(w, c, h->seq, MI_NACK_MALFORMED,
					    "a sealed frame carries no MAC: its tag authenticates it") < 0 ? -1 : 0;
		if (h->len < MI_MAC_LEN)
			return session_nack(w, c, h->seq, MI_NACK_MALFORMED,
					    "sealed frame shorter than its 16-byte tag") < 0 ? -1 : 0;
		if (open_sealed(w, c, f) < 0) {
			filter_count(w, DROP_BAD_MAC, MI_HDR_LEN + h->len);
			shm_count(&w->ctr[IC_SEAL_FAILED], 1);
			return session_nack(w, c, h->seq, MI_NACK_AUTH_FAILED, "sealed payload does not verify") < 0 ? -1 : 0;
		}
		shm_count(&w->ctr[IC_SEALED_OPENED], 1);
		data = w->open_buf;
		dlen = h->len - MI_MAC_LEN;
		dcrc = mi_crc32(data, dlen);
	} else if (h->flags & MI_F_MAC) {
		if (h->len < MI_MAC_LEN)
			return session_nack(w, c, h->seq, MI_NACK_MALFORMED,
					    "MAC frame shorter than its 16-byte MAC") < 0 ? -1 : 0;
		dlen = h->len - MI_MAC_LEN;
		uint8_t mac[MI_MAC_LEN];
		mi_frame_mac(mac, c->sess_key, h, f->payload, dlen);
		int ok = crypto_verify_16(mac, f->payload + dlen) == 0;   /* constant time */
		sodium_memzero(mac, sizeof(mac));
		if (!ok) {
			filter_count(w, DROP_BAD_MAC, MI_HDR_LEN + h->len);
			shm_count(&w->ctr[IC_BAD_MAC], 1);
			return session_nack(w, c, h->seq, MI_NACK_AUTH_FAILED, "MAC does not verify") < 0 ? -1 : 0;
		}
		dcrc = f->dcrc;   /* the decoder's, on its way to pcrc */
	}
	enum auth_verdict v = c->dev ? auth_frame_allowed(w, c->dev, h->flags, h->topic) : AUTH_OK;
	if (v == AUTH_NEED_SEAL || v == AUTH_NEED_MAC)
		return session_nack(w, c, h->seq, MI_NACK_AUTH_FAILED,
				    v == AUTH_NEED_SEAL ? "sealed frames required for this device" : "MAC required") < 0
			       ? -1
			       : 0;
	if (v == AUTH_TOPIC) {
		char msg[160];
		snprintf(msg, sizeof(msg), "topic %u is not in the scopes of device '%s'", h->topic, c->dev->id);
		filter_count(w, DROP_TOPIC, MI_HDR_LEN + h->len);
		return session_nack(w, c, h->seq, MI_NACK_TOPIC, msg) < 0 ? -1 : 0;
	}
	if (h->seq == 0)
		return session_nack(w, c, 0, MI_NACK_SEQ, "seq 0 is not a valid DATA seq") < 0 ? -1 : 0;
	struct shm_dev *d = shm_dev(w->ctl, (uint32_t)c->slot);
	if (h->seq <= d->last_accepted) {
		/* a retry: stored already, acknowledged once durable */
		shm_count(&w->ctr[IC_FRAMES_RETRY], 1);
	} else {
		int r = session_store(w, c->slot, h->topic, h->seq, h->ts_ns, data, dlen, dcrc);
		if (r < 0)
			return session_nack(w, c, h->seq, MI_NACK_OVERLOADED, "ring full") < 0 ? -1 : 0;
	}
	if (h->seq > c->hi_seq) {
		c->hi_seq = h->seq;
		ack_track(w, c);
	} else if (h->seq <= c->acked_seq) {
		/* the device missed our ACK: every retry gets one */
		c->ack_again = 1;
		ack_track(w, c);
	}
	return 0;
}

int session_frame(struct worker *w, struct conn *c, const struct mi_frame *f)
{
	if (c->state == CS_AWAIT_AUTH && f->h.type != MI_AUTH && f->h.type != MI_HELLO && f->h.type != MI_BYE)
		return session_nack(w, c, f->h.seq, MI_NACK_NOT_AUTH, "not authenticated: AUTH expected") < 0 ? -1 : 0;
	switch (f->h.type) {
	case MI_DATA:
		return on_data(w, c, f);
	case MI_HELLO:
		return on_hello(w, c, f);
	case MI_AUTH:
		return on_auth(w, c, f);
	case MI_PING: {
		uint8_t buf[MI_HDR_LEN];
		mi_frame_build(buf, sizeof(buf), MI_PONG, 0, 0, f->h.seq, 0, NULL, 0);
		return conn_send(w, c, buf, sizeof(buf)) < 0 ? -1 : 0;
	}
	case MI_BYE:
		conn_close(w, c, NULL);
		return -1;
	default: {
		char why[64];
		snprintf(why, sizeof(why), "unexpected frame type %u (%s) from a device", f->h.type,
			 mi_type_name(f->h.type));
		return session_nack(w, c, f->h.seq, MI_NACK_MALFORMED, why) < 0 ? -1 : 0;
	}
	}
}

void session_end(struct worker *w, struct conn *c)
{
	if (c->slot >= 0 && w->by_slot[c->slot] == c)
		w->by_slot[c->slot] = NULL;
	c->slot = -1;
	hs_free(c);
	c->dev = NULL;
	if (c->keyed) {
		sodium_memzero(c->sess_key, sizeof(c->sess_key));
		sodium_memzero(c->seal_key, sizeof(c->seal_key));
		c->keyed = 0;
	}
}
