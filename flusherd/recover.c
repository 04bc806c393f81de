#include "flusherd/recover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fsync_dir.h"
#include "common/seg.h"
#include "flusherd/ckpt.h"
#include "flusherd/wal.h"
#include "shm/atomic.h"
#include "shm/devtab.h"
#include "shm/ring.h"

struct segmap {
	int fd;
	uint8_t *p;
	size_t size;
};

static int map_seg(const char *dir, const char *name, struct segmap *m)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	m->fd = open(path, O_RDWR | O_CLOEXEC);
	if (m->fd < 0)
		return -errno;
	if (fstat(m->fd, &st) < 0) {
		close(m->fd);
		return -errno;
	}
	m->size = (size_t)st.st_size;
	m->p = NULL;
	if (m->size) {
		m->p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, m->fd, 0);
		if (m->p == MAP_FAILED) {
			int e = errno;
			close(m->fd);
			return -e;
		}
	}
	return 0;
}

/* On a live region (a restart, not a reboot): whether a MARK's batch was
 * synced.  flusherd stores each ring's `released` right after a successful
 * fdatasync, before anything else it publishes, and a MARK's positions are
 * where its batch ends in the rings: a batch past `released` was never
 * synced, so never acknowledged, and is still in the rings.  Its bytes may
 * exist only in the page cache (after a failed writeback Linux keeps the
 * pages, clean, and the next fdatasync reports success), so recovery cuts
 * it and the rings write it again rather than trust it.  A MARK of another
 * region was judged by that region's recovery already. */
static int mark_synced(struct shm_ctl *ctl, const struct rec_hdr *h)
{
	if (rec_mark_shm_id(h) != ctl->shm_id)
		return 1;
	for (uint32_t i = 0; i < rec_mark_nrings(h) && i < ctl->nrings; i++)
		if (rec_mark_pos(h, i) > shm_load_acquire(&shm_ring_hdr(ctl, i)->released))
			return 0;
	return 1;
}

static void unmap_seg(struct segmap *m)
{
	if (m->p)
		munmap(m->p, m->size);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->p = NULL;
}

static uint64_t new_log_id(void)
{
	uint64_t id = 0;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = clock_real_ns();
	return id ? id : 1;
}

/* Applies the records of [from, to) of a mapped segment to the device table.
 * Records before the checkpoint were never checked by pass 1, so each is
 * checked here: a flipped bit in a seq must not raise a device's seq.
 * Returns -1 and *ret_off at the first damaged record, or 0. */
static int apply_devices(struct shm_ctl *ctl, const uint8_t *base, uint64_t from, uint64_t to, uint64_t *ret_off)
{
	for (uint64_t off = from; off < to;) {
		if (seg_rec_check(base + off, to - off, MI_MAX_FRAME_CAP + 4096) != SEG_REC_OK) {
			*ret_off = off;
			return -1;
		}
		const struct rec_hdr *h = (const struct rec_hdr *)(const void *)(base + off);
		if (h->type == REC_DATA) {
			int slot = devtab_insert(ctl, rec_id(h), h->id_len);
			if (slot >= 0) {
				struct shm_dev *d = shm_dev(ctl, (uint32_t)slot);
				if (h->seq > d->last_durable)
					shm_store_release(&d->last_durable, h->seq);
			}
		}
		off += rec_total(h);
	}
	return 0;
}

int recover_run(const char *data_dir, struct shm_ctl *ctl, struct recover_result *ret,
		char err[RECOVER_ERR_LEN])
{
	char wal_dir[512];
	struct recover_result res;
	struct meta meta;
	struct seg_ent *segs = NULL;
	size_t nseg = 0;
	int r, have_meta;
	int fresh_shm = !shm_load_acquire(&ctl->ready);

	memset(&res, 0, sizeof(res));
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", data_dir);
	r = meta_load(data_dir, &meta);
	if (r < 0 && r != -ENOENT) {
		snprintf(err, RECOVER_ERR_LEN, "%s/meta: %s", data_dir,
			 r == -EBADMSG ? "no valid copy in either slot" : strerror(-r));
		return r;
	}
	have_meta = r == 0;
	if ((r = seg_list(wal_dir, &segs, &nseg)) < 0) {
		snprintf(err, RECOVER_ERR_LEN, "%s: %s", wal_dir, strerror(-r));
		return r;
	}
	if (nseg == 0) {
		if (have_meta && meta.ckpt_lsn > 0) {
			snprintf(err, RECOVER_ERR_LEN,
				 "%s: no segments, but %s/meta says the log was durable up to LSN %llu",
				 wal_dir, data_dir, (unsigned long long)meta.ckpt_lsn);
			return -ENOENT;
		}
		res.log_id = have_meta ? meta.log_id : new_log_id();
		res.new_log = 1;
		res.seg_first = res.end_lsn = have_meta ? meta.ckpt_lsn : 0;
		goto devices;
	}

	uint64_t ckpt = have_meta ? meta.ckpt_lsn : segs[0].first_lsn;
	if (have_meta && meta.shm_id == ctl->shm_id)
		for (uint32_t i = 0; i < meta.nrings && i < ctl->nrings; i++)
			res.pos[i] = meta.pos[i];
	size_t first = 0;
	while (first + 1 < nseg && segs[first + 1].first_lsn <= ckpt)
		first++;
	if (segs[first].first_lsn > ckpt) {
		snprintf(err, RECOVER_ERR_LEN, "%s: checkpoint LSN %llu is before the first segment %s",
			 wal_dir, (unsigned long long)ckpt, segs[first].name);
		r = -EBADMSG;
		goto out;
	}

	/* pass 1: verify, find the end of the last MARK (on a live region: the
	 * last one whose batch was synced; see mark_synced()) */
	uint64_t log_id = have_meta ? meta.log_id : 0;
	uint64_t cut = ckpt, expect_first = segs[first].first_lsn;
	size_t cut_seg = first, stop_seg = nseg;
	uint64_t stop = 0;      /* file offset where the walk of segment stop_seg ended */
	for (size_t s = first; s < nseg; s++) {
		struct segmap m;
		struct seg_hdr sh;
		uint64_t sfirst, slog;
		int last = s + 1 == nseg;
		if ((r = map_seg(wal_dir, segs[s].name, &m)) < 0) {
			snprintf(err, RECOVER_ERR_LEN, "%s/%s: %s", wal_dir, segs[s].name, strerror(-r));
			goto out;
		}
		if (seg_hdr_parse(m.p, m.size, &sh) < 0 || sh.first_lsn != segs[s].first_lsn) {
			unmap_seg(&m);
			if (last && m.size <= SEG_HDR_LEN) {
				/* a rotation that died before its header was synced: the
				 * segment holds nothing; drop it and end the log before it */
				char path[600];
				snprintf(path, sizeof(path), "%s/%s", wal_dir, segs[s].name);
				unlink(path);
				nseg--;
				/* the checkpoint was at its start: the log ends there, at
				 * the end of the segment before */
				if (cut_seg == s && s > 0)
					cut_seg = s - 1;
				break;
			}
			snprintf(err, RECOVER_ERR_LEN, "%s/%s: bad segment header; run flusherd --replay", wal_dir,
				 segs[s].name);
			r = -EBADMSG;
			goto out;
		}
		sfirst = sh.first_lsn;
		slog = sh.log_id;
		if (!log_id)
			log_id = slog;
		if (slog != log_id || sfirst != expect_first) {
			unmap_seg(&m);
			snprintf(err, RECOVER_ERR_LEN, "%s/%s: %s; run flusherd --replay", wal_dir, segs[s].name,
				 slog != log_id ? "belongs to another log (log id differs from data/meta)"
						: "does not start where the previous segment ends");
			r = -EBADMSG;
			goto out;
		}
		uint64_t off = s == first ? ckpt - sfirst : 0;
		if (SEG_HDR_LEN + off > m.size) {
			unmap_seg(&m);
			snprintf(err, RECOVER_ERR_LEN,
				 "%s/%s: the log ends before its checkpoint (LSN %llu): durable data is missing; "
				 "run flusherd --replay", wal_dir, segs[s].name, (unsigned long long)ckpt);
			r = -EBADMSG;
			goto out;
		}
		/* version 2: a MARK counts only if it closes the write before it
		 * (common/seg.h), a chain rooted in the header; from the
		 * checkpoint on, in the MARK that ends there (durable, so whole) */
		int chained = sh.version >= 2;
		struct seg_chain ch;
		seg_chain_start(&ch, sh.crc);
		if (chained && off > 0) {
			const struct rec_hdr *mk = seg_mark_ending_at(m.p + SEG_HDR_LEN + off, (size_t)off, sfirst + off);
			if (!mk) {
				unmap_seg(&m);
				snprintf(err, RECOVER_ERR_LEN,
					 "%s/%s: no write ends at the checkpoint (LSN %llu): durable data is damaged; "
					 "run flusherd --replay", wal_dir, segs[s].name, (unsigned long long)ckpt);
				r = -EBADMSG;
				goto out;
			}
			seg_chain_start(&ch, mk->crc);
		}
		enum seg_rec_status st = SEG_REC_END;
		while (SEG_HDR_LEN + off < m.size) {
			const uint8_t *p = m.p + SEG_HDR_LEN + off;
			/* the hard cap, not today's max_frame: records written
			 * under a larger one are whole records */
			st = seg_rec_check(p, m.size - SEG_HDR_LEN - off, MI_MAX_FRAME_CAP + 4096);
			if (st != SEG_REC_OK)
				break;
			const struct rec_hdr *h = (const struct rec_hdr *)(const void *)p;
			if (chained && h->type == REC_MARK && !seg_chain_close(&ch, h, sfirst + off)) {
				st = SEG_REC_STALE;
				break;
			}
			if (chained && h->type != REC_MARK)
				seg_chain_add(&ch, h);
			off += rec_total(h);
			res.records++;
			if (h->type == REC_MARK && (fresh_shm || mark_synced(ctl, h))) {
				cut = sfirst + off;
				cut_seg = s;
				if (rec_mark_shm_id(h) == ctl->shm_id)
					for (uint32_t i = 0; i < rec_mark_nrings(h) && i < ctl->nrings; i++)
						res.pos[i] = rec_mark_pos(h, i);
			}
			st = SEG_REC_END;
		}
		if (cut_seg == s) {
			stop_seg = s;
			stop = SEG_HDR_LEN + off;
		}
		if (!last && st != SEG_REC_END) {
			unmap_seg(&m);
			snprintf(err, RECOVER_ERR_LEN,
				 "%s/%s: %s at offset %llu inside the log (not its tail); durable data is damaged: "
				 "run flusherd --replay, then --repair",
				 wal_dir, segs[s].name, seg_rec_status_name(st),
				 (unsigned long long)(SEG_HDR_LEN + off));
			r = -EBADMSG;
			goto out;
		}
		expect_first = sfirst + off;
		unmap_seg(&m);
	}
	if (nseg == 0) {
		/* the only segment was a dead rotation: start again where it was */
		res.log_id = log_id ? log_id : new_log_id();
		res.new_log = 1;
		res.seg_first = res.end_lsn = segs[0].first_lsn;
		goto devices;
	}

	/* cut: only the last segment (or segments emptied after the cut) lose bytes */
	for (size_t s = nseg; s-- > cut_seg + 1;) {
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", wal_dir, segs[s].name);
		struct stat st;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint64_t dirty;
		if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > SEG_HDR_LEN &&
		    wal_dirty_end(fd, SEG_HDR_LEN, (uint64_t)st.st_size, &dirty) == 0)
			res.cut_bytes += dirty - SEG_HDR_LEN;
		if (fd >= 0)
			close(fd);
		if (unlink(path) < 0) {
			r = -errno;
			snprintf(err, RECOVER_ERR_LEN, "%s: unlink: %s", path, strerror(-r));
			goto out;
		}
	}
	nseg = cut_seg + 1;
	{
		char path[600];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", wal_dir, segs[cut_seg].name);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			r = -errno;
			snprintf(err, RECOVER_ERR_LEN, "%s: %s", path, strerror(-r));
			if (fd >= 0)
				close(fd);
			goto out;
		}
		/* zero (not truncate) what follows the last MARK: a preallocated
		 * segment stays preallocated, and no stale record survives to be
		 * read as part of the log after the next crash.  A recycled
		 * segment holds an older segment's records to its end: zeroing
		 * them all would cost what recycling saves, and the MARK chain
		 * already keeps them out of the log (common/seg.h), so only the
		 * whole records the walk passed after the cut are zeroed, and a
		 * zero header at the cut ends the data as a write would */
		uint64_t keep = SEG_HDR_LEN + (cut - segs[cut_seg].first_lsn), dirty = keep;
		uint8_t hb[SEG_HDR_LEN];
		struct seg_hdr cuth;
		int recycled = pread(fd, hb, SEG_HDR_LEN, 0) == SEG_HDR_LEN &&
			       seg_hdr_parse(hb, SEG_HDR_LEN, &cuth) == 0 && (cuth.flags & SEG_F_RECYCLED);
		if (recycled) {
			uint64_t upto = stop_seg == cut_seg && stop > keep ? stop : keep;
			res.cut_bytes += upto - keep;
			dirty = upto > keep + REC_HDR_LEN ? upto : keep + REC_HDR_LEN;
			if (dirty > (uint64_t)st.st_size)
				dirty = (uint64_t)st.st_size;
			if (dirty > keep && (r = wal_zero_range(fd, keep, dirty)) < 0) {
				snprintf(err, RECOVER_ERR_LEN, "%s: cut at %llu bytes: %s", path,
					 (unsigned long long)keep, strerror(-r));
				close(fd);
				goto out;
			}
		} else if ((uint64_t)st.st_size > keep &&
			   ((r = wal_dirty_end(fd, keep, (uint64_t)st.st_size, &dirty)) < 0 ||
			    (r = wal_zero_range(fd, keep, dirty)) < 0)) {
			snprintf(err, RECOVER_ERR_LEN, "%s: cut at %llu bytes: %s", path, (unsigned long long)keep,
				 strerror(-r));
			close(fd);
			goto out;
		}
		if (!recycled)
			res.cut_bytes += dirty - keep;
		/* the previous flusherd may have died between write and sync */
		if (fdatasync(fd) < 0) {
			r = -errno;
			snprintf(err, RECOVER_ERR_LEN, "%s: fdatasync: %s", path, strerror(-r));
			close(fd);
			goto out;
		}
		close(fd);
		if (fsync_dir(wal_dir) < 0) { /* best effort: the segment data is synced */ }
	}
	res.log_id = log_id;
	res.seg_first = segs[cut_seg].first_lsn;
	res.end_lsn = cut;

devices:
	/* pass 1 judged MARKs by this region's shm_id, which no MARK of this
	 * log carries when the region served another log: the same verdicts as
	 * on a fresh region, so the caller may discard the region and run
	 * recovery again */
	if (!fresh_shm && ctl->log_id && ctl->log_id != res.log_id) {
		snprintf(err, RECOVER_ERR_LEN,
			 "it holds the rings and device seqs of another log (log id %016llx, this one %016llx: "
			 "a different or emptied data directory)",
			 (unsigned long long)ctl->log_id, (unsigned long long)res.log_id);
		r = -EXDEV;
		goto out;
	}
	int scan_all = 0;
	if (fresh_shm) {
		uint64_t dlsn = 0;
		r = devices_load(data_dir, ctl, res.end_lsn, &dlsn);
		/* no usable checkpoint of the seqs: the whole log has them */
		scan_all = r <= 0;
		if (r == -ESTALE)
			r = 0;
		if (r < 0) {
			snprintf(err, RECOVER_ERR_LEN, "%s/devices: %s", data_dir,
				 r == -EBADMSG ? "damaged (bad checksum or length)" :
				 r == -ENOSPC ? "more devices than [shm] devices slots" : strerror(-r));
			goto out;
		}
		res.devices_loaded = r;
	}
	/* pass 2: device seqs from the trusted part of the log */
	if (!res.new_log) {
		uint64_t ck = have_meta && !scan_all ? meta.ckpt_lsn : segs[0].first_lsn;
		for (size_t s = 0; s < nseg; s++) {
			uint64_t sfirst = segs[s].first_lsn;
			uint64_t send = s + 1 < nseg ? segs[s + 1].first_lsn : res.end_lsn;
			if (send <= ck)
				continue;
			struct segmap m;
			if ((r = map_seg(wal_dir, segs[s].name, &m)) < 0) {
				snprintf(err, RECOVER_ERR_LEN, "%s/%s: %s", wal_dir, segs[s].name, strerror(-r));
				goto out;
			}
			/* pass 1 checked only the segments from the checkpoint on */
			struct seg_hdr hh;
			if (seg_hdr_parse(m.p, m.size, &hh) < 0 || hh.first_lsn != sfirst || hh.log_id != res.log_id) {
				if (!res.damaged_seg[0]) {
					snprintf(res.damaged_seg, sizeof(res.damaged_seg), "%s", segs[s].name);
					res.damaged_off = 0;
				}
				unmap_seg(&m);
				continue;
			}
			uint64_t from = ck > sfirst ? ck - sfirst : 0, bad = from;
			uint64_t to = send - sfirst;
			if (to > m.size - SEG_HDR_LEN)
				to = m.size - SEG_HDR_LEN;
			/* damage before the checkpoint (durable, acked data) is not a
			 * reason to refuse: the rest of that segment is skipped and
			 * named; at worst a device's seq is too low, never too high */
			if (apply_devices(ctl, m.p + SEG_HDR_LEN, from, to, &bad) < 0 && !res.damaged_seg[0]) {
				snprintf(res.damaged_seg, sizeof(res.damaged_seg), "%s", segs[s].name);
				res.damaged_off = SEG_HDR_LEN + bad;
			}
			unmap_seg(&m);
		}
	}
	for (uint32_t i = 0; i < ctl->ndevices; i++) {
		struct shm_dev *d = shm_dev(ctl, i);
		if (shm_load_acquire(&d->state) != DEV_READY)
			continue;
		uint64_t dur = d->last_durable;
		if (fresh_shm || d->last_accepted < dur)
			shm_store_release(&d->last_accepted, dur);
	}
	for (uint32_t i = 0; i < ctl->nrings; i++) {
		struct ring_hdr *h = shm_ring_hdr(ctl, i);
		uint64_t head = shm_load_acquire(&h->head);
		if (head > res.pos[i] && head - res.pos[i] > h->cap) {
			snprintf(err, RECOVER_ERR_LEN,
				 "ring %u: %llu bytes between what the log holds (%llu) and the ring head (%llu), more "
				 "than the ring's %llu: records were lost; stop every stage and remove the shm region",
				 i, (unsigned long long)(head - res.pos[i]), (unsigned long long)res.pos[i],
				 (unsigned long long)head, (unsigned long long)h->cap);
			r = -EPROTO;
			goto out;
		}
		if (res.pos[i] > head) {
			snprintf(err, RECOVER_ERR_LEN,
				 "ring %u: the log holds records up to position %llu but the ring head is %llu "
				 "(shm region reused by another log?); stop every stage and remove the shm region",
				 i, (unsigned long long)res.pos[i], (unsigned long long)head);
			r = -EPROTO;
			goto out;
		}
	}
	*ret = res;
	r = 0;
out:
	free(segs);
	return r;
}
