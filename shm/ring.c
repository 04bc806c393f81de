#include "shm/ring.h"

#include <errno.h>

#include "shm/atomic.h"

void ring_init(struct ring_hdr *h, uint64_t cap)
{
	h->head = h->tail = h->released = 0;
	h->cap = cap;
}

void ring_prod_attach(struct ring_prod *p, struct ring_hdr *h)
{
	p->h = h;
	p->data = ring_data(h);
	p->cap = h->cap;
	p->head = shm_load_acquire(&h->head);
	p->released = shm_load_acquire(&h->released);
}

void *ring_reserve(struct ring_prod *p, uint32_t n)
{
	uint64_t mask = p->cap - 1;
	uint64_t off = p->head & mask;
	uint64_t skip = p->cap - off < n ? p->cap - off : 0;
	if (p->head + skip + n - p->released > p->cap) {
		p->released = shm_load_acquire(&p->h->released);
		if (p->head + skip + n - p->released > p->cap)
			return NULL;
	}
	if (skip) {
		if (skip >= REC_HDR_LEN) {
			struct rec_hdr *pad = (struct rec_hdr *)(void *)(p->data + off);
			pad->crc = 0;
			pad->plen = (uint32_t)(skip - REC_HDR_LEN);
			pad->type = REC_PAD;
			pad->id_len = 0;
		}
		p->head += skip;
	}
	void *rec = p->data + (p->head & mask);
	p->head += n;
	return rec;
}

uint64_t ring_publish(struct ring_prod *p)
{
	shm_store_release(&p->h->head, p->head);
	return p->head;
}

void ring_cons_attach(struct ring_cons *c, struct ring_hdr *h, uint64_t pos)
{
	c->h = h;
	c->data = ring_data(h);
	c->cap = h->cap;
	c->pos = pos;
}

const struct rec_hdr *ring_cons_peek(struct ring_cons *c, uint64_t head, int *ret_err)
{
	uint64_t mask = c->cap - 1;
	*ret_err = 0;
	while (c->pos < head) {
		uint64_t off = c->pos & mask;
		uint64_t room = c->cap - off;
		if (room < REC_HDR_LEN) {
			c->pos += room;
			continue;
		}
		const struct rec_hdr *r = (const struct rec_hdr *)(const void *)(c->data + off);
		uint32_t total = rec_total(r);
		if (r->type == REC_PAD) {
			if (total != room) {
				*ret_err = -EBADMSG;
				return NULL;
			}
			c->pos += room;
			continue;
		}
		if ((r->type != REC_DATA && r->type != REC_MARK) || total > room || total > head - c->pos) {
			*ret_err = -EBADMSG;
			return NULL;
		}
		return r;
	}
	return NULL;
}
