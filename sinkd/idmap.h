/* idmap — a name (bytes) to id map, open addressing, for the index sink's
 * device and field dictionaries: one lookup per record and field without
 * a round trip to SQLite.  Grows by doubling; an entry is allocated once,
 * when a name is first seen, so memory is bounded by the distinct names.
 */
#ifndef MI_IDMAP_H
#define MI_IDMAP_H
#include <stddef.h>
#include <stdint.h>

struct idmap_ent {
	uint64_t hash;
	int64_t id;
	uint32_t len;
	char name[];          /* len bytes, then a NUL */
};

struct idmap {
	struct idmap_ent **slot;
	size_t cap, n;        /* cap a power of two, n < cap / 2 */
};

/* The id of name, or -1. */
int64_t idmap_get(const struct idmap *m, const void *name, size_t len);
/* Adds name (not present) as id.  0 or -ENOMEM. */
int idmap_put(struct idmap *m, const void *name, size_t len, int64_t id);
void idmap_free(struct idmap *m);
#endif
