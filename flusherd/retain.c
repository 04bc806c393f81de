#include "flusherd/retain.h"

int retain_holds(const struct retain_holder *h, uint64_t end_lsn)
{
	if (h->policy != LAG_SKIP || !h->lag_cap_bytes)
		return 1;
	return h->lsn >= end_lsn || end_lsn - h->lsn <= h->lag_cap_bytes;
}

/* Whether segs[i], with left bytes of log from it on, exceeds a limit. */
static int over_limit(const struct retain_in *in, size_t i, uint64_t left)
{
	if (in->retain_bytes && left > in->retain_bytes)
		return 1;
	uint64_t t = in->segs[i].newest_ns;
	/* an unknown age, or a clock set back, never makes a segment old */
	return in->retain_ms && t && in->now_ns > t && (in->now_ns - t) / 1000000ull > in->retain_ms;
}

void retain_floor(const struct retain_in *in, struct retain_plan *ret)
{
	struct retain_plan p = { .n = 0, .stop = RETAIN_STOP_ACTIVE };
	uint64_t left = in->ready_bytes;
	for (size_t i = 0; i < in->nseg; i++)
		left += in->segs[i].bytes;
	for (; p.n + 1 < in->nseg; p.n++) {
		size_t i = p.n;
		uint64_t end = in->segs[i + 1].first_lsn;
		if (!over_limit(in, i, left)) {
			p.stop = RETAIN_STOP_LIMITS;
			break;
		}
		size_t h = 0;
		while (h < in->nholders && (!retain_holds(&in->holders[h], in->end_lsn) || in->holders[h].lsn >= end))
			h++;
		if (h < in->nholders) {
			p.stop = RETAIN_STOP_HOLDER;
			p.holder = h;
			break;
		}
		if (in->ckpt_lsn < end) {
			p.stop = RETAIN_STOP_CKPT;
			break;
		}
		p.bytes += in->segs[i].bytes;
		left -= in->segs[i].bytes;
	}
	if (p.n + 1 >= in->nseg)
		p.stop = RETAIN_STOP_ACTIVE;
	p.floor_lsn = p.n < in->nseg ? in->segs[p.n].first_lsn : 0;
	*ret = p;
}

const char *retain_stop_name(enum retain_stop s)
{
	switch (s) {
	case RETAIN_STOP_ACTIVE: return "only the active segment is left";
	case RETAIN_STOP_LIMITS: return "within the limits";
	case RETAIN_STOP_HOLDER: return "held by a sink";
	case RETAIN_STOP_CKPT: return "waiting for the checkpoint";
	case RETAIN_STOP_MAX: break;
	}
	return "?";
}
