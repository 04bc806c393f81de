/* atomic — the only way cross-process shared fields are read and written.
 *
 * Publish by writing the data fully, then shm_store_release() the position;
 * read the position with shm_load_acquire() before touching the data.
 * Counters owned by one writer use the relaxed forms.
 */
#ifndef MI_ATOMIC_H
#define MI_ATOMIC_H
#include <stdint.h>

#define shm_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define shm_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define shm_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define shm_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define shm_fetch_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define shm_fetch_sub(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_SEQ_CST)
#define shm_cas(p, expp, v) \
	__atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

/* A counter with one writer: no locked instruction on the hot path. */
static inline void shm_count(uint64_t *c, uint64_t n)
{
	shm_store_relaxed(c, shm_load_relaxed(c) + n);
}

/* Raises *p to v if v is larger; one writer. */
static inline void shm_max(uint64_t *p, uint64_t v)
{
	if (v > shm_load_relaxed(p))
		shm_store_relaxed(p, v);
}
#endif
