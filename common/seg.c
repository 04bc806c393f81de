#include "common/seg.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t seg_magic[8] = { 'M', 'I', 'W', 'A', 'L', 'S', 'E', 'G' };

void seg_name(uint64_t first_lsn, char buf[SEG_NAME_LEN])
{
	snprintf(buf, SEG_NAME_LEN, "%020llu.seg", (unsigned long long)first_lsn);
}

static int cmp_ent(const void *a, const void *b)
{
	uint64_t x = ((const struct seg_ent *)a)->first_lsn, y = ((const struct seg_ent *)b)->first_lsn;
	return x < y ? -1 : x > y;
}

int seg_list(const char *dir, struct seg_ent **ret, size_t *ret_n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct seg_ent *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len != 24 || strcmp(e->d_name + 20, ".seg") || strspn(e->d_name, "0123456789") != 20)
			continue;
		char *end;
		unsigned long long lsn = strtoull(e->d_name, &end, 10);
		if (end != e->d_name + 20)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct seg_ent *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n].first_lsn = lsn;
		memcpy(v[n].name, e->d_name, len + 1);
		n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_ent);
	*ret = v;
	*ret_n = n;
	return 0;
}

void seg_hdr_build(uint8_t out[SEG_HDR_LEN], uint64_t first_lsn, uint64_t log_id, uint64_t created_ns,
		   uint32_t flags)
{
	memset(out, 0, SEG_HDR_LEN);
	memcpy(out, seg_magic, 8);
	mi_put32(out + 8, SEG_VERSION);
	mi_put32(out + 12, SEG_HDR_LEN);
	mi_put64(out + 16, first_lsn);
	mi_put64(out + 24, log_id);
	mi_put64(out + 32, created_ns);
	mi_put32(out + 40, flags);
	mi_put32(out + 60, mi_crc32(out, 60));
}

int seg_hdr_parse(const uint8_t *in, size_t len, struct seg_hdr *ret)
{
	if (len < SEG_HDR_LEN || memcmp(in, seg_magic, 8) || mi_get32(in + 12) != SEG_HDR_LEN ||
	    mi_get32(in + 60) != mi_crc32(in, 60))
		return -EBADMSG;
	uint32_t version = mi_get32(in + 8), flags = mi_get32(in + 40);
	if (version < 1 || version > SEG_VERSION || (version == 1 && flags))
		return -EBADMSG;
	ret->version = version;
	ret->flags = flags;
	ret->first_lsn = mi_get64(in + 16);
	ret->log_id = mi_get64(in + 24);
	ret->created_ns = mi_get64(in + 32);
	ret->crc = mi_get32(in + 60);
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

enum seg_rec_status seg_rec_check(const uint8_t *p, size_t avail, uint32_t max_plen)
{
	if (avail == 0)
		return SEG_REC_END;
	if (avail < REC_HDR_LEN)
		return all_zero(p, avail) ? SEG_REC_END : SEG_REC_TORN;
	const struct rec_hdr *h = (const struct rec_hdr *)(const void *)p;
	if (h->crc == 0 && h->plen == 0 && h->type == 0)
		return all_zero(p, REC_HDR_LEN) ? SEG_REC_END : SEG_REC_BAD;
	if ((h->type != REC_DATA && h->type != REC_MARK) || h->plen > max_plen ||
	    (h->type == REC_DATA && (h->id_len == 0 || h->id_len > MI_DEVID_MAX)) ||
	    (h->type == REC_MARK && h->id_len != 0))
		return SEG_REC_BAD;
	if (rec_total(h) > avail)
		return SEG_REC_TORN;
	return rec_crc(h) == h->crc ? SEG_REC_OK : SEG_REC_BAD;
}

const char *seg_rec_status_name(enum seg_rec_status s)
{
	switch (s) {
	case SEG_REC_OK: return "ok";
	case SEG_REC_END: return "end";
	case SEG_REC_TORN: return "torn record (runs past the end of the file)";
	case SEG_REC_BAD: return "bad record (checksum or header)";
	case SEG_REC_STALE: return "MARK that does not close the write before it (stale bytes or damage)";
	}
	return "?";
}

void seg_chain_bind(const struct seg_chain *c, uint64_t lsn, struct rec_mark_bind *ret)
{
	ret->lsn = lsn;
	ret->nrec = c->nrec;
	ret->digest = c->digest;
	ret->prev = c->link;
}

int seg_chain_close(struct seg_chain *c, const struct rec_hdr *h, uint64_t lsn)
{
	uint32_t n = rec_mark_nrings(h);
	if (h->type != REC_MARK || n > REC_MARK_MAX_RINGS || h->plen != REC_MARK_PLEN(n))
		return 0;
	struct rec_mark_bind b;
	rec_mark_bind(h, &b);
	if (b.lsn != lsn || b.nrec != c->nrec || b.digest != c->digest || b.prev != c->link)
		return 0;
	seg_chain_start(c, h->crc);
	return 1;
}

const struct rec_hdr *seg_mark_ending_at(const uint8_t *end, size_t before, uint64_t lsn)
{
	if (before < REC_HDR_LEN + REC_MARK_PLEN(1))
		return NULL;
	uint64_t start = mi_get64(end - 16);   /* the trailer: lsn, digest, prev */
	if (start >= lsn)
		return NULL;
	uint64_t total = lsn - start;
	if (total > before || total < REC_HDR_LEN + REC_MARK_PLEN(1) || total > REC_MARK_MAX_LEN ||
	    total % REC_ALIGN)
		return NULL;
	const uint8_t *p = end - total;
	if ((uintptr_t)p % REC_ALIGN)
		return NULL;
	const struct rec_hdr *h = (const struct rec_hdr *)(const void *)p;
	if (seg_rec_check(p, (size_t)total, REC_MARK_MAX_LEN) != SEG_REC_OK || h->type != REC_MARK ||
	    rec_total(h) != total || h->plen != REC_MARK_PLEN(rec_mark_nrings(h)))
		return NULL;
	return h;
}
