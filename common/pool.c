#include "common/pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct free_node { struct free_node *next; };

struct slab { struct slab *next; };

struct pool {
	struct free_node *free[POOL_CLASS_MAX];
	struct slab *slabs;
	struct pool_stats st;
};

/* Small classes come in slabs of 64 KiB so a burst of partial frames costs
 * one malloc per slab, not one per buffer; large ones are one buffer a slab. */
#define SLAB_BYTES (64u << 10)

static int class_of(size_t n)
{
	int c = 0;
	size_t sz = (size_t)1 << POOL_MIN_SHIFT;
	while (sz < n) {
		sz <<= 1;
		c++;
	}
	return c;
}

pool_t *pool_new(void)
{
	return calloc(1, sizeof(struct pool));
}

void pool_free(pool_t *p)
{
	if (!p)
		return;
	for (struct slab *s = p->slabs, *n; s; s = n) {
		n = s->next;
		free(s);
	}
	free(p);
}

static int refill(pool_t *p, int c)
{
	size_t sz = (size_t)1 << (c + POOL_MIN_SHIFT);
	size_t count = sz >= SLAB_BYTES ? 1 : SLAB_BYTES / sz;
	/* slab header padded to 64 so buffers stay cache-line aligned */
	struct slab *s = malloc(64 + count * sz);
	if (!s)
		return -1;
	s->next = p->slabs;
	p->slabs = s;
	p->st.bytes_reserved += count * sz;
	for (size_t i = 0; i < count; i++) {
		struct free_node *f = (struct free_node *)((char *)s + 64 + i * sz);
		f->next = p->free[c];
		p->free[c] = f;
	}
	return 0;
}

void *pool_get(pool_t *p, size_t n)
{
	if (n > ((size_t)1 << POOL_MAX_SHIFT))
		return NULL;
	int c = class_of(n ? n : 1);
	if (!p->free[c] && refill(p, c) < 0)
		return NULL;
	struct free_node *f = p->free[c];
	p->free[c] = f->next;
	p->st.in_use++;
	p->st.bytes_in_use += (size_t)1 << (c + POOL_MIN_SHIFT);
	return f;
}

void pool_put(pool_t *p, void *buf, size_t n)
{
	if (!buf)
		return;
	int c = class_of(n ? n : 1);
	struct free_node *f = buf;
	f->next = p->free[c];
	p->free[c] = f;
	p->st.in_use--;
	p->st.bytes_in_use -= (size_t)1 << (c + POOL_MIN_SHIFT);
}

int pool_grow(pool_t *p, uint8_t **buf, uint32_t *cap, uint32_t used, uint32_t need)
{
	if (need <= *cap)
		return 0;
	uint32_t n = *cap ? *cap : 1024;
	while (n < need)
		n *= 2;
	uint8_t *nb = pool_get(p, n);
	if (!nb)
		return -ENOMEM;
	if (used)
		memcpy(nb, *buf, used);
	pool_put(p, *buf, *cap);
	*buf = nb;
	*cap = n;
	return 0;
}

void pool_stats(const pool_t *p, struct pool_stats *ret)
{
	*ret = p->st;
}
