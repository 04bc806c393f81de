#include "common/backoff.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void backoff_init(struct backoff *b, uint32_t min_ms, uint32_t max_ms)
{
	b->min_ms = min_ms ? min_ms : 1;
	b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
	b->attempt = 0;
	if (getrandom(&b->rng, sizeof(b->rng), GRND_NONBLOCK) != sizeof(b->rng)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		b->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
	}
	if (!b->rng)
		b->rng = 0x9e3779b97f4a7c15ull;
}

uint32_t backoff_next(struct backoff *b)
{
	uint64_t d = b->min_ms;
	for (uint32_t i = 0; i < b->attempt && d < b->max_ms; i++)
		d *= 2;
	if (d > b->max_ms)
		d = b->max_ms;
	if (b->attempt < 64)
		b->attempt++;
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	uint64_t half = d / 2;
	return (uint32_t)(d - half + b->rng % (half + 1));
}
