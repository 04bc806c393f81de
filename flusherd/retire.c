#include "flusherd/retire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fsync_dir.h"
#include "common/log.h"
#include "common/offset.h"
#include "common/seg.h"
#include "shm/atomic.h"
#include "shm/shm.h"

#define RETIRE_W_MISSING 1u     /* "has no committed offset yet" */
#define RETIRE_W_DAMAGED 2u     /* "damaged" */

int retire_enabled(const struct settings *s)
{
	return s->retain_bytes > 0 || s->retain_ms > 0;
}

int retire_init(struct retirer *rt, const struct settings *s, cfg_t *cfg, uint64_t *ctr, char err[CFG_ERR_LEN])
{
	memset(rt, 0, sizeof(*rt));
	rt->s = s;
	rt->ctr = ctr;
	rt->held = RETAIN_STOP_MAX;
	snprintf(rt->wal_dir, sizeof(rt->wal_dir), "%s/wal", s->data_dir);
	snprintf(rt->sinks_dir, sizeof(rt->sinks_dir), "%s/sinks", s->data_dir);
	/* the same list, split the same way, as sinkd runs */
	char list[sizeof(s->sinks)], *save = NULL;
	memcpy(list, s->sinks, sizeof(list));
	for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		int dup = 0;
		for (size_t i = 0; i < rt->nholders; i++)
			dup |= !strcmp(rt->holders[i].name, tok);
		if (dup || strlen(tok) >= sizeof(rt->holders[0].name))
			continue;       /* sinkd refuses such a list; it holds nothing twice */
		struct retire_name *v = realloc(rt->holders, (rt->nholders + 1) * sizeof(*v));
		if (!v) {
			snprintf(err, CFG_ERR_LEN, "retention: out of memory");
			retire_free(rt);
			return -ENOMEM;
		}
		rt->holders = v;
		memset(&v[rt->nholders], 0, sizeof(v[0]));
		snprintf(v[rt->nholders].name, sizeof(v[0].name), "%s", tok);
		rt->nholders++;
		char section[80];
		snprintf(section, sizeof(section), "sink.%s", tok);
		int r = cfg ? sinkcfg_read(cfg, s, section, &v[rt->nholders - 1].cfg, err) : 0;
		if (r < 0) {
			retire_free(rt);
			return r;
		}
	}
	return 0;
}

void retire_free(struct retirer *rt)
{
	for (size_t i = 0; i < rt->nholders; i++)
		sinkcfg_free(&rt->holders[i].cfg);
	free(rt->holders);
	free(rt->gone);
	free(rt->ages);
	rt->holders = rt->gone = NULL;
	rt->ages = NULL;
	rt->nholders = rt->ngone = rt->nages = 0;
}

/* The server time of the newest record of the finished segment name
 * (data ends at data_end, a file offset): the MARK that ends it was
 * written last; its srv_ns is when.  Version 1 (no trailer to find it
 * by) or unreadable: the file's mtime, the time of its last write. */
static uint64_t newest_ns(const char *dir, const char *name, uint64_t data_end)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint64_t t = 0;
	uint8_t hb[SEG_HDR_LEN];
	struct seg_hdr h;
	_Alignas(8) uint8_t buf[REC_MARK_MAX_LEN];
	if (pread(fd, hb, SEG_HDR_LEN, 0) == SEG_HDR_LEN && seg_hdr_parse(hb, SEG_HDR_LEN, &h) == 0 &&
	    h.version >= 2 && data_end > SEG_HDR_LEN) {
		uint64_t n = data_end - SEG_HDR_LEN < sizeof(buf) ? data_end - SEG_HDR_LEN : sizeof(buf);
		if (pread(fd, buf + sizeof(buf) - n, n, (off_t)(data_end - n)) == (ssize_t)n) {
			const struct rec_hdr *m =
				seg_mark_ending_at(buf + sizeof(buf), (size_t)n, h.first_lsn + data_end - SEG_HDR_LEN);
			if (m)
				t = m->srv_ns;
		}
	}
	struct stat st;
	if (!t && fstat(fd, &st) == 0)
		t = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
	close(fd);
	return t;
}

/* Newest-record times, read once per finished segment. */
static uint64_t segment_age(struct retirer *rt, const struct seg_ent *e, uint64_t next_first)
{
	for (size_t i = 0; i < rt->nages; i++)
		if (rt->ages[i].first_lsn == e->first_lsn)
			return rt->ages[i].newest_ns;
	uint64_t t = newest_ns(rt->wal_dir, e->name, SEG_HDR_LEN + (next_first - e->first_lsn));
	struct retire_age *v = realloc(rt->ages, (rt->nages + 1) * sizeof(*v));
	if (v && t) {
		rt->ages = v;
		rt->ages[rt->nages++] = (struct retire_age){ e->first_lsn, t };
	} else if (v) {
		rt->ages = v;
	}
	return t;
}

/* Forgets the times of segments that are gone. */
static void prune_ages(struct retirer *rt, uint64_t floor_lsn)
{
	size_t k = 0;
	for (size_t i = 0; i < rt->nages; i++)
		if (rt->ages[i].first_lsn >= floor_lsn)
			rt->ages[k++] = rt->ages[i];
	rt->nages = k;
}

/* Each holder's committed LSN, from its offset file. */
static void read_holders(struct retirer *rt, struct retain_holder *out)
{
	for (size_t i = 0; i < rt->nholders; i++) {
		struct retire_name *n = &rt->holders[i];
		uint64_t lsn = 0;
		void *blob = NULL;
		size_t blob_len = 0;
		int r = offset_load(rt->sinks_dir, n->name, &lsn, &blob, &blob_len);
		free(blob);
		if (r == 0) {
			n->warned = 0;
		} else if (r == -ENOENT) {
			lsn = 0;
			if (!(n->warned & RETIRE_W_MISSING))
				log_info("retention: sink instance %s has no committed offset yet (%s/%s.offset): it holds "
					 "the log from its start", n->name, rt->sinks_dir, n->name);
			n->warned |= RETIRE_W_MISSING;
		} else {
			lsn = 0;
			if (!(n->warned & RETIRE_W_DAMAGED))
				log_warn("retention: %s/%s.offset: %s; sink instance %s holds the log from its start "
					 "until its offset is written again", rt->sinks_dir, n->name,
					 r == -EBADMSG ? "damaged" : strerror(-r), n->name);
			n->warned |= RETIRE_W_DAMAGED;
		}
		out[i] = (struct retain_holder){ .name = n->name, .lsn = lsn, .lag_cap_bytes = n->cfg.lag_cap_bytes,
						 .policy = n->cfg.policy };
	}
}

/* Offset files of names no longer in [sinkd] sinks: said once each. */
static void note_gone(struct retirer *rt)
{
	DIR *d = opendir(rt->sinks_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len <= 7 || strcmp(e->d_name + len - 7, ".offset") || len - 7 >= sizeof(rt->gone[0].name))
			continue;
		char name[sizeof(rt->gone[0].name)];
		memcpy(name, e->d_name, len - 7);
		name[len - 7] = 0;
		int known = 0;
		for (size_t i = 0; i < rt->nholders && !known; i++)
			known = !strcmp(rt->holders[i].name, name);
		for (size_t i = 0; i < rt->ngone && !known; i++)
			known = !strcmp(rt->gone[i].name, name);
		if (known)
			continue;
		struct retire_name *v = realloc(rt->gone, (rt->ngone + 1) * sizeof(*v));
		if (!v)
			break;
		rt->gone = v;
		memset(&v[rt->ngone], 0, sizeof(v[0]));
		memcpy(v[rt->ngone].name, name, len - 6);
		rt->ngone++;
		log_info("retention: sink instance %s is not in [sinkd] sinks any more: it no longer holds retention "
			 "(%s/%s)", name, rt->sinks_dir, e->d_name);
	}
	closedir(d);
}

static double mib(uint64_t b)
{
	return (double)b / (1 << 20);
}

/* The records of topics in [from, end) of a segment (first LSN first)
 * mapped at map: a walk over their headers.  *at: where it stopped, end
 * unless the data is not whole there. */
static uint64_t count_records(const uint8_t *map, uint64_t first, uint64_t from, uint64_t end, const uint8_t *topics,
			      uint64_t *at)
{
	uint64_t n = 0, lsn = from;
	while (lsn + REC_HDR_LEN <= end) {
		const struct rec_hdr *h = (const struct rec_hdr *)(const void *)(map + SEG_HDR_LEN + (lsn - first));
		uint64_t len = rec_total(h);
		if ((h->type != REC_DATA && h->type != REC_MARK) || len < REC_HDR_LEN || (len & 7) || lsn + len > end)
			break;
		n += h->type == REC_DATA && topics_has(topics, h->topic);
		lsn += len;
	}
	*at = lsn;
	return n;
}

/* Before segs[0..nret) go: the records of holder n (at lsn, passed by
 * retention) that they hold from lsn on, into its ledger. */
static int note_skipped(struct retirer *rt, struct retire_name *n, uint64_t lsn, const struct seg_ent *segs,
			const int *fds, size_t nret)
{
	struct skipped *v = NULL;
	size_t nv = 0;
	int r = skipped_load(rt->sinks_dir, n->name, &v, &nv);
	if (r == -EBADMSG)
		log_warn("retention: %s/%s.skipped: damaged; started over (what it said of LSNs below %llu is lost)",
			 rt->sinks_dir, n->name, (unsigned long long)segs[0].first_lsn);
	else if (r < 0 && r != -ENOENT)
		return r;
	/* what lies below the instance's offset is behind it for good */
	size_t k = 0;
	for (size_t i = 0; i < nv; i++)
		if (v[i].to > lsn)
			v[k++] = v[i];
	nv = k;
	struct skipped *w = realloc(v, (nv + nret) * sizeof(*w));
	if (!w) {
		free(v);
		return -ENOMEM;
	}
	v = w;
	for (size_t i = 0; i < nret; i++) {
		uint64_t first = segs[i].first_lsn, end = segs[i + 1].first_lsn, from = lsn > first ? lsn : first, at;
		if (end <= lsn)
			continue;
		void *map = mmap(NULL, SEG_HDR_LEN + (end - first), PROT_READ, MAP_SHARED, fds[i], 0);
		if (map == MAP_FAILED) {
			r = -errno;
			free(v);
			return r;
		}
		uint64_t recs = count_records(map, first, from, end, n->cfg.topics, &at);
		munmap(map, SEG_HDR_LEN + (end - first));
		if (at < end)
			log_warn("retention: %s/%s: records not whole at LSN %llu; sink instance %s's count of what it "
				 "skips stops there", rt->wal_dir, segs[i].name, (unsigned long long)at, n->name);
		if (at > from)
			v[nv++] = (struct skipped){ from, at, recs };
	}
	if (nv > SKIPPED_MAX) {
		memmove(v, v + (nv - SKIPPED_MAX), SKIPPED_MAX * sizeof(*v));
		nv = SKIPPED_MAX;
	}
	r = skipped_store(rt->sinks_dir, n->name, v, nv);
	free(v);
	return r;
}

/* lag_policy = skip past its cap: said once per episode, when retention
 * first passes the instance, and again when it is back within its cap. */
static void note_passing(struct retirer *rt, const struct retain_holder *hs, uint64_t end_lsn, uint64_t floor)
{
	for (size_t i = 0; i < rt->nholders; i++) {
		struct retire_name *n = &rt->holders[i];
		if (n->cfg.policy != LAG_SKIP)
			continue;
		int over = !retain_holds(&hs[i], end_lsn);
		if (over && !n->passing && hs[i].lsn < floor) {
			log_warn("retention: sink instance %s (committed LSN %llu) is %.1f MiB behind the end of the log, "
				 "over its lag_cap_bytes (%.1f MiB) with lag_policy = skip: retention passes it, and it "
				 "skips the records retired before it delivers them (counted, in ingest-stats)", n->name,
				 (unsigned long long)hs[i].lsn, mib(end_lsn - hs[i].lsn), mib(n->cfg.lag_cap_bytes));
			n->passing = 1;
		} else if (!over && n->passing) {
			log_info("retention: sink instance %s is within its lag_cap_bytes again: it holds the log",
				 n->name);
			n->passing = 0;
		}
	}
}

int retire_run(struct retirer *rt, uint64_t ckpt_lsn, uint64_t end_lsn, struct wal_spare *sp)
{
	struct seg_ent *segs = NULL;
	struct retain_seg *rs = NULL;
	struct retain_holder *hs = NULL;
	int *fds = NULL;
	char *locked = NULL;
	struct retain_plan plan = { .n = 0 };
	size_t nseg = 0;
	int r = seg_list(rt->wal_dir, &segs, &nseg);
	if (r < 0) {
		log_warn("retention: %s: %s", rt->wal_dir, strerror(-r));
		return r;
	}
	note_gone(rt);
	rs = calloc(nseg ? nseg : 1, sizeof(*rs));
	hs = calloc(rt->nholders ? rt->nholders : 1, sizeof(*hs));
	if (!rs || !hs) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nseg; i++) {
		char path[600];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", rt->wal_dir, segs[i].name);
		rs[i].first_lsn = segs[i].first_lsn;
		rs[i].bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
		if (rt->s->retain_ms && i + 1 < nseg)
			rs[i].newest_ns = segment_age(rt, &segs[i], segs[i + 1].first_lsn);
	}
	read_holders(rt, hs);
	struct retain_in in = {
		.segs = rs, .nseg = nseg, .holders = hs, .nholders = rt->nholders, .end_lsn = end_lsn,
		.ckpt_lsn = ckpt_lsn, .now_ns = clock_real_ns(), .ready_bytes = wal_ready_bytes(rt->wal_dir),
		.retain_bytes = rt->s->retain_bytes,
		.retain_ms = (uint64_t)rt->s->retain_ms,
	};
	retain_floor(&in, &plan);
	/* a holder keeping the log over its limit: said once per episode */
	if (plan.stop == RETAIN_STOP_HOLDER && (rt->held != plan.stop || rt->held_by != plan.holder)) {
		uint64_t total = 0;
		for (size_t i = plan.n; i < nseg; i++)
			total += rs[i].bytes;
		log_info("retention: sink instance %s (committed LSN %llu) holds the log from LSN %llu: %zu segment(s), "
			 "%.1f MiB", hs[plan.holder].name, (unsigned long long)hs[plan.holder].lsn,
			 (unsigned long long)plan.floor_lsn, nseg - plan.n, mib(total));
	}
	rt->held = plan.stop;
	rt->held_by = plan.holder;
	note_passing(rt, hs, end_lsn, plan.n < nseg ? plan.floor_lsn : 0);
	if (plan.n == 0)
		goto out;
	/* a segment no reader maps may be recycled; one mapped only unlinked */
	fds = malloc(plan.n * sizeof(*fds));
	locked = calloc(plan.n, 1);
	if (!fds || !locked) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < plan.n; i++) {
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", rt->wal_dir, segs[i].name);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		locked[i] = fds[i] >= 0 && flock(fds[i], LOCK_EX | LOCK_NB) == 0;
	}
	/* read again under the locks: an offset inside a locked segment can no
	 * longer move (no instance reads there), so the counts below are the
	 * instance's to the record */
	read_holders(rt, hs);
	for (size_t i = 0; i < rt->nholders; i++) {
		if (hs[i].policy != LAG_SKIP || hs[i].lsn >= plan.floor_lsn || retain_holds(&hs[i], end_lsn))
			continue;
		if ((r = note_skipped(rt, &rt->holders[i], hs[i].lsn, segs, fds, plan.n)) < 0) {
			log_warn("retention: %s/%s.skipped: %s; nothing retired (sink instance %s would skip records "
				 "uncounted)", rt->sinks_dir, hs[i].name, strerror(-r), hs[i].name);
			goto out;
		}
	}
	/* the offsets just read must be on disk before what they allow goes */
	if (rt->nholders && (r = fsync_dir(rt->sinks_dir)) < 0) {
		log_warn("retention: fsync %s: %s; nothing retired", rt->sinks_dir, strerror(-r));
		goto out;
	}
	size_t done = 0, recycled = 0;
	uint64_t bytes = 0;
	for (; done < plan.n; done++) {
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", rt->wal_dir, segs[done].name);
		/* -EEXIST: the pool is full; -EINVAL: not a whole segment */
		r = locked[done] ? wal_recycle(rt->wal_dir, segs[done].name, rt->s->segment_bytes, sp) : -EEXIST;
		if (r == 0) {
			recycled++;
			shm_count(&rt->ctr[FC_RECYCLED_SEGMENTS], 1);
		} else if (r != -EEXIST && r != -EINVAL) {
			log_warn("retention: recycle %s: %s", path, strerror(-r));
			break;
		} else if (unlink(path) < 0) {
			r = -errno;
			log_warn("retention: unlink %s: %s", path, strerror(-r));
			break;
		} else if ((r = fsync_dir(rt->wal_dir)) < 0) {
			/* on disk before the next one goes: a crash leaves a prefix gone */
			log_warn("retention: fsync %s: %s", rt->wal_dir, strerror(-r));
		}
		bytes += rs[done].bytes;
		shm_count(&rt->ctr[FC_RETIRED_SEGMENTS], 1);
		shm_count(&rt->ctr[FC_RETIRED_BYTES], rs[done].bytes);
	}
	if (done) {
		uint64_t floor = segs[done].first_lsn, left = 0;
		for (size_t i = done; i < nseg; i++)
			left += rs[i].bytes;
		prune_ages(rt, floor);
		log_info("retention: retired %zu segment(s), %.1f MiB (LSN %llu to %llu, %s; %zu recycled as the next "
			 "segment): the log starts at LSN %llu, %zu segment(s), %.1f MiB", done, mib(bytes),
			 (unsigned long long)segs[0].first_lsn, (unsigned long long)floor,
			 rt->s->retain_bytes && in.retain_bytes < left + bytes + in.ready_bytes ? "over retain_bytes" :
										   "older than retain_ms",
			 recycled, (unsigned long long)floor, nseg - done, mib(left));
		r = (int)done;
	}
out:
	if (fds)
		for (size_t i = 0; i < plan.n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	free(fds);
	free(locked);
	free(rs);
	free(hs);
	free(segs);
	return r;
}
