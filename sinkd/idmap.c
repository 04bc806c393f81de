#include "sinkd/idmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static size_t find(const struct idmap *m, uint64_t h, const void *name, size_t len)
{
	size_t i = h & (m->cap - 1);
	while (m->slot[i] && !(m->slot[i]->hash == h && m->slot[i]->len == len && !memcmp(m->slot[i]->name, name, len)))
		i = (i + 1) & (m->cap - 1);
	return i;
}

int64_t idmap_get(const struct idmap *m, const void *name, size_t len)
{
	if (!m->cap)
		return -1;
	size_t i = find(m, hash(name, len), name, len);
	return m->slot[i] ? m->slot[i]->id : -1;
}

static int grow(struct idmap *m)
{
	size_t cap = m->cap ? 2 * m->cap : 64;
	struct idmap_ent **s = calloc(cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	struct idmap old = *m;
	m->slot = s;
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slot[i])
			m->slot[find(m, old.slot[i]->hash, old.slot[i]->name, old.slot[i]->len)] = old.slot[i];
	free(old.slot);
	return 0;
}

int idmap_put(struct idmap *m, const void *name, size_t len, int64_t id)
{
	if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
		return -ENOMEM;
	struct idmap_ent *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->hash = hash(name, len);
	e->id = id;
	e->len = (uint32_t)len;
	memcpy(e->name, name, len);
	e->name[len] = 0;
	m->slot[find(m, e->hash, name, len)] = e;
	m->n++;
	return 0;
}

void idmap_free(struct idmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slot[i]);
	free(m->slot);
	m->slot = NULL;
	m->cap = m->n = 0;
}
