/* ring — single-producer / single-consumer ring of variable-length records.
 *
 * One per ingestd worker.  Positions are byte counts that only grow (u64:
 * never wrap in practice); the offset in the data is pos & (cap - 1).
 *
 *   head      producer (ingestd): records below it are complete and visible
 *   tail      consumer (flusherd): records below it are written to the WAL
 *   released  consumer (flusherd): records below it are durable (fdatasync'd)
 *
 * The producer reuses space only below `released`, not `tail`: a record
 * written to the WAL but not yet synced stays in the ring, so a flusherd
 * that dies or whose fdatasync fails can write it again.  Records are
 * record.h records, 8-byte aligned; a record that does not fit before the
 * end of the data is preceded by a REC_PAD (or, under 40 bytes, a bare skip).
 */
#ifndef MI_RING_H
#define MI_RING_H
#include <stdint.h>

#include "common/record.h"

struct ring_hdr {
	_Alignas(128) uint64_t head;
	_Alignas(128) uint64_t tail;
	_Alignas(128) uint64_t released;
	_Alignas(128) uint64_t cap;     /* bytes of data, power of two; constant */
	uint8_t pad_[120];
};

#define RING_DATA_OFF 4096u
_Static_assert(sizeof(struct ring_hdr) <= RING_DATA_OFF, "ring header fits its page");

static inline uint8_t *ring_data(struct ring_hdr *h)
{
	return (uint8_t *)h + RING_DATA_OFF;
}

void ring_init(struct ring_hdr *h, uint64_t cap);

/* Producer side: a process-local cursor; reserve records, then publish them
 * all with one release store. */
struct ring_prod {
	struct ring_hdr *h;
	uint8_t *data;
	uint64_t cap;
	uint64_t head;       /* local: reserved, not necessarily published */
	uint64_t released;   /* cached copy of h->released */
};

void ring_prod_attach(struct ring_prod *p, struct ring_hdr *h);
/* n bytes (a multiple of 8, at most cap/4) at the head, or NULL when the
 * ring is full.  Invisible to the consumer until ring_publish(). */
void *ring_reserve(struct ring_prod *p, uint32_t n);
/* Makes every reserved record visible.  Returns the published head. */
uint64_t ring_publish(struct ring_prod *p);

/* Consumer side. */
struct ring_cons {
	struct ring_hdr *h;
	uint8_t *data;
	uint64_t cap;
	uint64_t pos;        /* local read cursor */
};

void ring_cons_attach(struct ring_cons *c, struct ring_hdr *h, uint64_t pos);
/* The record at the cursor, skipping pads, or NULL when the cursor reached
 * head.  *ret_err is set to -EBADMSG (and NULL returned) if the record is
 * impossible (a producer bug or stray write): the caller must stop. */
const struct rec_hdr *ring_cons_peek(struct ring_cons *c, uint64_t head, int *ret_err);
static inline void ring_cons_advance(struct ring_cons *c, uint32_t n)
{
	c->pos += n;
}
#endif
