#include "flusherd/commit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/fault.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

_Static_assert(SHM_MAX_RINGS <= REC_MARK_MAX_RINGS, "a MARK holds every ring's position");

int commit_init(struct committer *c, struct shm_ctl *ctl, struct wal *w, const uint64_t *pos,
		uint64_t commit_bytes, uint64_t commit_us, uint32_t max_rec)
{
	memset(c, 0, sizeof(*c));
	c->ctl = ctl;
	c->wal = w;
	c->commit_bytes = commit_bytes;
	c->commit_ns = commit_us * 1000;
	c->max_rec = max_rec;
	c->ctr = shm_ctr(ctl, STAGE_FLUSHERD);
	c->pend = calloc(ctl->ndevices, sizeof(*c->pend));
	c->touched = calloc(ctl->ndevices, sizeof(*c->touched));
	if (!c->pend || !c->touched) {
		commit_free(c);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < ctl->nrings; i++) {
		struct ring_hdr *h = shm_ring_hdr(ctl, i);
		ring_cons_attach(&c->cons[i], h, pos[i]);
		c->released[i] = pos[i];
		shm_store_release(&h->tail, pos[i]);
		shm_store_release(&h->released, pos[i]);
	}
	return 0;
}

void commit_free(struct committer *c)
{
	free(c->pend);
	free(c->touched);
	c->pend = NULL;
	c->touched = NULL;
}

int commit_pending(const struct committer *c)
{
	for (uint32_t i = 0; i < c->ctl->nrings; i++)
		if (shm_load_acquire(&c->cons[i].h->head) != c->cons[i].pos)
			return 1;
	return 0;
}

static void note_seq(struct committer *c, uint32_t slot, uint64_t seq)
{
	if (slot >= c->ctl->ndevices)
		return;
	if (!c->pend[slot])
		c->touched[c->ntouched++] = slot;
	if (seq > c->pend[slot])
		c->pend[slot] = seq;
}

int64_t commit_step(struct committer *c)
{
	struct shm_ctl *ctl = c->ctl;
	struct iovec iov[2 * SHM_MAX_RINGS + 1];
	uint64_t newpos[SHM_MAX_RINGS];
	int niov = 0;
	uint64_t bytes = 0, records = 0;
	uint32_t mark_len = rec_size(0, REC_MARK_PLEN(ctl->nrings));

	if (wal_room(c->wal) < (uint64_t)c->max_rec + mark_len) {
		int r = commit_sync(c);
		if (r < 0)
			return r;
		if ((r = wal_rotate(c->wal)) < 0) {
			c->fail_op = "create segment";
			return r;
		}
		shm_count(&c->ctr[FC_SEGMENTS], 1);
	}
	uint64_t limit = wal_room(c->wal) - mark_len;
	if (limit > c->commit_bytes)
		limit = c->commit_bytes;

	/* first pass over the records: spans and the bytes they add up to,
	 * and the MARK's digest of them; device seqs are noted only once the
	 * write has succeeded */
	struct seg_chain chain;
	seg_chain_start(&chain, c->wal->link);
	for (uint32_t r = 0; r < ctl->nrings; r++) {
		struct ring_cons tmp = c->cons[r];
		uint64_t head = shm_load_acquire(&tmp.h->head);
		const uint8_t *span = NULL;
		size_t span_len = 0;
		int err;
		const struct rec_hdr *h;
		while ((h = ring_cons_peek(&tmp, head, &err))) {
			uint32_t n = rec_total(h);
			if (bytes + n > limit && bytes > 0)
				break;
			if (span && span + span_len == (const uint8_t *)h) {
				span_len += n;
			} else {
				if (span)
					iov[niov++] = (struct iovec){ (void *)span, span_len };
				span = (const uint8_t *)h;
				span_len = n;
			}
			seg_chain_add(&chain, h);
			ring_cons_advance(&tmp, n);
			bytes += n;
			records++;
		}
		if (err < 0)
			return err;
		if (span)
			iov[niov++] = (struct iovec){ (void *)span, span_len };
		newpos[r] = tmp.pos;
	}
	if (bytes == 0) {
		/* pads only: move past them without writing */
		for (uint32_t r = 0; r < ctl->nrings; r++)
			c->cons[r].pos = newpos[r];
		return 0;
	}
	struct rec_mark_bind bind;
	seg_chain_bind(&chain, c->wal->lsn + bytes, &bind);
	rec_build_mark(c->mark, ctl->shm_id, ctl->nrings, newpos, clock_real_ns(), &bind);
	iov[niov++] = (struct iovec){ c->mark, mark_len };
	int r = wal_append(c->wal, iov, niov, bytes + mark_len, ((const struct rec_hdr *)(const void *)c->mark)->crc);
	if (r < 0) {
		shm_count(&c->ctr[FC_WRITE_ERRORS], 1);
		c->fail_op = "write";
		return r;
	}
	fault_point("flusherd.after_write");
	if (!c->unsynced_since)
		c->unsynced_since = clock_mono_ns();
	for (uint32_t i = 0; i < ctl->nrings; i++) {
		struct ring_cons tmp = c->cons[i];
		int err;
		const struct rec_hdr *h;
		while (tmp.pos < newpos[i] && (h = ring_cons_peek(&tmp, newpos[i], &err))) {
			note_seq(c, h->slot, h->seq);
			ring_cons_advance(&tmp, rec_total(h));
		}
		c->cons[i].pos = newpos[i];
		shm_store_release(&c->cons[i].h->tail, newpos[i]);
	}
	shm_count(&c->ctr[FC_RECORDS], records);
	shm_count(&c->ctr[FC_BYTES], bytes + mark_len);
	shm_count(&c->ctr[FC_WRITES], 1);
	return (int64_t)(bytes + mark_len);
}

int commit_due(const struct committer *c, uint64_t now_ns)
{
	if (c->wal->lsn == c->wal->synced_lsn)
		return 0;
	return c->wal->lsn - c->wal->synced_lsn >= c->commit_bytes ||
	       now_ns - c->unsynced_since >= c->commit_ns;
}

/* The FC_SYNC_HIST counter for a sync of ns nanoseconds: [0, 64) us, then
 * [2^k, 2^(k+1)) us (64..127 us is the second), the last open-ended. */
static unsigned sync_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned k = us < 64 ? 0 : 58u - (unsigned)__builtin_clzll(us);   /* floor(log2 us) - 5 */
	unsigned last = FC_SYNC_HIST_END - FC_SYNC_HIST - 1;
	return FC_SYNC_HIST + (k < last ? k : last);
}

int commit_sync(struct committer *c)
{
	struct shm_ctl *ctl = c->ctl;
	if (c->wal->lsn == c->wal->synced_lsn)
		return 0;
	uint64_t t0 = clock_mono_ns();
	int r = wal_sync(c->wal);
	uint64_t dt = clock_mono_ns() - t0;
	if (r < 0) {
		shm_count(&c->ctr[FC_SYNC_ERRORS], 1);
		c->fail_op = c->wal->dir_unsynced ? "fsync directory" : "fdatasync";
		/* the WAL forgot the unsynced tail: read those records again */
		for (uint32_t i = 0; i < ctl->nrings; i++) {
			c->cons[i].pos = c->released[i];
			shm_store_release(&c->cons[i].h->tail, c->released[i]);
		}
		for (uint32_t i = 0; i < c->ntouched; i++)
			c->pend[c->touched[i]] = 0;
		c->ntouched = 0;
		c->unsynced_since = 0;
		return r;
	}
	fault_point("flusherd.after_sync");
	shm_count(&c->ctr[FC_SYNCS], 1);
	shm_count(&c->ctr[FC_SYNC_NS_TOTAL], dt);
	shm_max(&c->ctr[FC_SYNC_NS_MAX], dt);
	shm_count(&c->ctr[sync_bucket(dt)], 1);
	for (uint32_t i = 0; i < ctl->nrings; i++) {
		c->released[i] = c->cons[i].pos;
		shm_store_release(&c->cons[i].h->released, c->released[i]);
	}
	for (uint32_t i = 0; i < c->ntouched; i++) {
		uint32_t slot = c->touched[i];
		struct shm_dev *d = shm_dev(ctl, slot);
		if (c->pend[slot] > d->last_durable)
			shm_store_release(&d->last_durable, c->pend[slot]);
		c->pend[slot] = 0;
	}
	c->ntouched = 0;
	c->unsynced_since = 0;
	fault_point("flusherd.after_release");
	shm_store_release(&ctl->durable_lsn, c->wal->synced_lsn);
	shm_store_relaxed(&c->ctr[FC_DURABLE_LSN], c->wal->synced_lsn);
	futex_seq_signal(&ctl->durable);
	return 0;
}
