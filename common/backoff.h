/* backoff — exponential retry delays with jitter.
 *
 * The n-th retry in a row (n from 0) waits a delay drawn uniformly from
 * [d/2, d], d = min(min_ms * 2^n, max_ms): growing delays, so a service
 * that is down is not hammered, and jittered, so many retriers that failed
 * together do not come back in step. */
#ifndef MI_BACKOFF_H
#define MI_BACKOFF_H
#include <stdint.h>

struct backoff {
	uint32_t min_ms, max_ms;
	uint32_t attempt;            /* retries in a row so far */
	uint64_t rng;                /* xorshift state, seeded by backoff_init */
};

void backoff_init(struct backoff *b, uint32_t min_ms, uint32_t max_ms);
/* The delay before the next retry; counts the attempt. */
uint32_t backoff_next(struct backoff *b);
/* A success: the next failure starts again from min_ms. */
static inline void backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}
#endif
