/* pool — size-classed buffer pool for partial frames.
 *
 * A connection holds a buffer only while a frame is split across reads, so
 * idle connections cost nothing.  Buffers are carved from slabs and recycled
 * through per-class free lists: after warm-up the hot path never calls
 * malloc.  Classes are powers of two from 256 B to 16 MiB.  Single-threaded.
 */
#ifndef MI_POOL_H
#define MI_POOL_H
#include <stddef.h>
#include <stdint.h>

#define POOL_MIN_SHIFT 8   /* 256 B */
#define POOL_MAX_SHIFT 24  /* 16 MiB */
#define POOL_CLASS_MAX (POOL_MAX_SHIFT - POOL_MIN_SHIFT + 1)

struct pool_stats {
	uint64_t in_use;        /* buffers handed out and not yet returned */
	uint64_t bytes_in_use;  /* their class sizes added up */
	uint64_t bytes_reserved;/* bytes held from the system (slabs) */
};

typedef struct pool pool_t;

pool_t *pool_new(void);
void pool_free(pool_t *p);
/* A buffer of at least n bytes (n <= 16 MiB), or NULL when out of memory. */
void *pool_get(pool_t *p, size_t n);
/* Return a buffer from pool_get() of the same size request n. NULL is ignored. */
void pool_put(pool_t *p, void *buf, size_t n);
void pool_stats(const pool_t *p, struct pool_stats *ret);
/* Grows *buf (of *cap bytes, used of them in use) to hold need bytes,
 * doubling from 1 KiB; the contents move along.  0 or -ENOMEM. */
int pool_grow(pool_t *p, uint8_t **buf, uint32_t *cap, uint32_t used, uint32_t need);
#endif
