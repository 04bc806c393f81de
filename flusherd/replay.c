#include "flusherd/replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/seg.h"
#include "flusherd/ckpt.h"
#include "shm/atomic.h"
#include "shm/shm.h"

static void dump_rec(uint64_t lsn, const struct rec_hdr *h, int crc_ok)
{
	char id[MI_DEVID_MAX * 6 + 1];
	size_t o = 0;
	/* ids are checked at ingest, but a damaged record may hold anything */
	for (uint32_t i = 0; i < h->id_len && i < MI_DEVID_MAX; i++) {
		uint8_t ch = rec_id(h)[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			id[o++] = (char)ch;
		else
			o += (size_t)snprintf(id + o, sizeof(id) - o, "\\u%04x", ch);
	}
	id[o] = 0;
	printf("{\"lsn\":%llu,\"device\":\"%s\",\"topic\":%u,\"seq\":%llu,\"ts_ns\":%llu,\"len\":%u,"
	       "\"crc_ok\":%s}\n",
	       (unsigned long long)lsn, id, h->topic, (unsigned long long)h->seq,
	       (unsigned long long)h->ts_ns, h->plen, crc_ok ? "true" : "false");
}

struct damage {
	size_t seg;          /* index of the damaged segment */
	uint64_t off;        /* data offset (after the header) of the first bad byte */
	int found;
};

/* Where the log is cut: the end of the last MARK before the damage, as
 * recovery would, so a repaired log is exactly what a restart keeps. */
struct cut {
	size_t seg;
	uint64_t off;
};

int replay_run(const struct settings *s, int dump, int repair)
{
	char wal_dir[512];
	struct seg_ent *segs = NULL;
	size_t nseg = 0;
	int lock = -1, r, ret = 2;
	uint64_t records = 0, data_records = 0, bytes = 0, expect = 0, log_id = 0, start = 0;
	size_t nread = 0;
	struct damage dmg = { 0, 0, 0 };
	struct cut cut = { 0, 0 }, mark = { 0, 0 };
	unsigned problems = 0;

	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", s->data_dir);
	if (repair) {
		char path[600];
		snprintf(path, sizeof(path), "%s/LOCK", wal_dir);
		lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
			fprintf(stderr, "flusherd --repair: %s: %s\n", path,
				errno == EWOULDBLOCK ? "flusherd is running; stop the pipeline first" : strerror(errno));
			goto out;
		}
	}
	if (repair) {
		/* stages hold the device table and ring positions of the log as it
		 * was: they must not outlive a cut */
		shm_region_t reg;
		char serr[SHM_ERR_LEN];
		if (shm_attach_ro(s->instance, &reg, serr) == 0) {
			for (int st = 0; st < STAGE_MAX; st++) {
				int32_t pid = shm_load_acquire(&reg.ctl->stage[st].pid);
				if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)) {
					fprintf(stderr, "flusherd --repair: %s (pid %d) is running; stop the pipeline first\n",
						shm_stage_name(st), pid);
					shm_close_region(&reg);
					goto out;
				}
			}
			shm_close_region(&reg);
		}
	}
	if ((r = seg_list(wal_dir, &segs, &nseg)) < 0) {
		fprintf(stderr, "flusherd --replay: %s: %s\n", wal_dir, strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < nseg; i++) {
		char path[600];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", wal_dir, segs[i].name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && nread == 0) {
			/* retired by a running flusherd since the listing: the
			 * log now starts after it */
			continue;
		}
		if (fd < 0 || fstat(fd, &st) < 0) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto out;
		}
		size_t size = (size_t)st.st_size;
		uint8_t *p = size ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : NULL;
		close(fd);
		if (p == MAP_FAILED) {
			fprintf(stderr, "%s: mmap: %s\n", path, strerror(errno));
			goto out;
		}
		struct seg_hdr sh;
		if (!nread++)
			start = segs[i].first_lsn;
		if (!p || seg_hdr_parse(p, size, &sh) < 0 || sh.first_lsn != segs[i].first_lsn) {
			fprintf(stderr, "%s: offset 0: bad segment header\n", path);
			problems++;
			if (!dmg.found)
				dmg = (struct damage){ i, 0, 1 };
			if (p)
				munmap(p, size);
			continue;
		}
		uint64_t first = sh.first_lsn, lid = sh.log_id;
		/* version 2: MARKs must close their writes (common/seg.h); a
		 * recycled file holds an older segment's records after the end */
		int chained = sh.version >= 2, stale_after_end = chained && (sh.flags & SEG_F_RECYCLED);
		struct seg_chain ch;
		seg_chain_start(&ch, sh.crc);
		if (nread > 1 && first != expect) {
			fprintf(stderr, "%s: starts at LSN %llu but the previous segment ends at %llu\n", path,
				(unsigned long long)first, (unsigned long long)expect);
			problems++;
		}
		if (log_id && lid != log_id) {
			fprintf(stderr, "%s: belongs to another log (log id %016llx, expected %016llx)\n", path,
				(unsigned long long)lid, (unsigned long long)log_id);
			problems++;
		}
		log_id = lid;
		uint64_t off = 0;
		while (SEG_HDR_LEN + off < size) {
			const uint8_t *rp = p + SEG_HDR_LEN + off;
			size_t avail = size - SEG_HDR_LEN - off;
			enum seg_rec_status st2 = seg_rec_check(rp, avail, MI_MAX_FRAME_CAP + 4096);
			const struct rec_hdr *h = (const struct rec_hdr *)(const void *)rp;
			if (st2 == SEG_REC_OK && chained && h->type == REC_MARK && !seg_chain_close(&ch, h, first + off))
				st2 = SEG_REC_STALE;
			if (st2 == SEG_REC_END) {
				/* zeros to the end of the file: a preallocated segment's
				 * unused room; anything else after them is damage (but
				 * in a recycled file: the segment it was before) */
				size_t z = 0;
				while (!stale_after_end && z < avail && !rp[z])
					z++;
				if (!stale_after_end && z < avail) {
					fprintf(stderr, "%s: offset %llu (LSN %llu): data after the end of the log "
						"(%zu bytes from here to the end)\n", path,
						(unsigned long long)(SEG_HDR_LEN + off),
						(unsigned long long)(first + off), avail);
					problems++;
					if (!dmg.found)
						dmg = (struct damage){ i, off, 1 };
				}
				break;
			}
			if (st2 != SEG_REC_OK) {
				fprintf(stderr, "%s: offset %llu (LSN %llu): %s; %zu bytes from here to the end\n",
					path, (unsigned long long)(SEG_HDR_LEN + off),
					(unsigned long long)(first + off), seg_rec_status_name(st2), avail);
				problems++;
				if (!dmg.found)
					dmg = (struct damage){ i, off, 1 };
				/* a record whose header still holds is shown, marked bad */
				if (dump && st2 == SEG_REC_BAD && h->type == REC_DATA && rec_total(h) <= avail)
					dump_rec(first + off, h, 0);
				break;
			}
			if (chained && h->type != REC_MARK)
				seg_chain_add(&ch, h);
			records++;
			if (h->type == REC_MARK && !dmg.found)
				mark = (struct cut){ i, off + rec_total(h) };
			if (h->type == REC_DATA) {
				data_records++;
				if (dump)
					dump_rec(first + off, h, 1);
			}
			off += rec_total(h);
		}
		bytes += off;
		expect = first + off;
		munmap(p, size);
	}
	fflush(stdout);
	/* a log whose oldest segments were retired starts after them */
	char from[64] = "";
	if (start)
		snprintf(from, sizeof(from), " from LSN %llu", (unsigned long long)start);
	fprintf(stderr, "%s: %zu segment(s)%s, %llu records (%llu data), %llu bytes, log ends at LSN %llu: %s\n",
		wal_dir, nread, from, (unsigned long long)records, (unsigned long long)data_records,
		(unsigned long long)bytes, (unsigned long long)expect,
		problems ? "DAMAGED" : "whole");
	ret = problems ? 1 : 0;
	cut = mark;
	if (repair && dmg.found) {
		char path[600];
		uint64_t cut_lsn = segs[cut.seg].first_lsn + cut.off;
		for (size_t i = nseg; i-- > cut.seg + 1;) {
			snprintf(path, sizeof(path), "%s/%s", wal_dir, segs[i].name);
			if (unlink(path) < 0) {
				fprintf(stderr, "flusherd --repair: %s: %s\n", path, strerror(errno));
				ret = 2;
				goto out;
			}
			fprintf(stderr, "flusherd --repair: removed %s (after the damage)\n", path);
		}
		snprintf(path, sizeof(path), "%s/%s", wal_dir, segs[cut.seg].name);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (cut.off == 0 && fd >= 0) {
			/* header damaged or nothing valid: rewrite it empty */
			uint8_t hdr[SEG_HDR_LEN];
			seg_hdr_build(hdr, segs[cut.seg].first_lsn, log_id, 0, 0);
			if (pwrite(fd, hdr, SEG_HDR_LEN, 0) != SEG_HDR_LEN)
				fd = (close(fd), -1);
		}
		if (fd < 0 || ftruncate(fd, (off_t)(SEG_HDR_LEN + cut.off)) < 0 || fsync(fd) < 0) {
			fprintf(stderr, "flusherd --repair: %s: %s\n", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			ret = 2;
			goto out;
		}
		close(fd);
		/* the shm device table and data/devices may know seqs that are no
		 * longer in the log: the next start rebuilds them from the log */
		shm_unlink_instance(s->instance);
		struct meta m;
		if (meta_load(s->data_dir, &m) == 0 && m.ckpt_lsn > cut_lsn) {
			m.ckpt_lsn = cut_lsn;
			if (meta_store(s->data_dir, &m) < 0)
				fprintf(stderr, "flusherd --repair: %s/meta: cannot lower the checkpoint\n", s->data_dir);
		}
		fprintf(stderr, "flusherd --repair: cut %s at offset %llu (the end of the last whole write "
			"before the damage); the log now ends at LSN %llu\n", path,
			(unsigned long long)(SEG_HDR_LEN + cut.off), (unsigned long long)cut_lsn);
		ret = 0;
	}
out:
	free(segs);
	if (lock >= 0)
		close(lock);
	return ret;
}
