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

void seg_hdr_build(uint8_t out[SEG_HDR_LEN], uint64_t first_lsn, uint64_t log_id, uint64_t created_ns)
{
	memset(out, 0, SEG_HDR_LEN);
	memcpy(out, seg_magic, 8);
	mi_put32(out + 8, SEG_VERSION);
	mi_put32(out + 12, SEG_HDR_LEN);
	mi_put64(out + 16, first_lsn);
	mi_put64(out + 24, log_id);
	mi_put64(out + 32, created_ns);
	mi_put32(out + 60, mi_crc32(out, 60));
}

int seg_hdr_parse(const uint8_t *in, size_t len, uint64_t *ret_first_lsn, uint64_t *ret_log_id)
{
	if (len < SEG_HDR_LEN || memcmp(in, seg_magic, 8) || mi_get32(in + 8) != SEG_VERSION ||
	    mi_get32(in + 12) != SEG_HDR_LEN || mi_get32(in + 60) != mi_crc32(in, 60))
		return -EBADMSG;
	*ret_first_lsn = mi_get64(in + 16);
	*ret_log_id = mi_get64(in + 24);
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
	}
	return "?";
}
