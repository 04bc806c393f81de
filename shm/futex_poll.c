#include "shm/futex_poll.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux 6.7's opcode and futex2 size flag; Debian 12's uapi headers (6.1)
 * predate both.  The ring's probe says whether the running kernel has it. */
#define OP_FUTEX_WAIT 51
#define FUTEX2_SIZE_U32_ 0x02
#define FUTEX_BITSET_ANY 0xffffffffu

static int uring_setup(unsigned entries, struct io_uring_params *prm)
{
	long r = syscall(__NR_io_uring_setup, entries, prm);
	return r < 0 ? -errno : (int)r;
}

static int uring_enter(int fd, unsigned submit, unsigned flags)
{
	long r;
	do
		r = syscall(__NR_io_uring_enter, fd, submit, 0, flags, NULL, 0);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : (int)r;
}

static int uring_register(int fd, unsigned op, void *arg, unsigned n)
{
	long r = syscall(__NR_io_uring_register, fd, op, arg, n);
	return r < 0 ? -errno : (int)r;
}

static int has_futex_wait(int fd)
{
	size_t len = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
	struct io_uring_probe *pr = calloc(1, len);
	if (!pr)
		return -ENOMEM;
	int r = uring_register(fd, IORING_REGISTER_PROBE, pr, 256);
	if (r == 0)
		r = pr->last_op >= OP_FUTEX_WAIT && (pr->ops[OP_FUTEX_WAIT].flags & IO_URING_OP_SUPPORTED)
			    ? 0
			    : -EOPNOTSUPP;
	free(pr);
	return r;
}

static void *map_ring(int fd, uint64_t len, off_t off)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off);
	return m == MAP_FAILED ? NULL : m;
}

int futex_poll_open(struct futex_poll *p, int efd)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	/* DEFER_TASKRUN: a completion is queued for this thread to run when it
	 * next reaps, rather than interrupting whatever it sleeps in (epoll_wait
	 * would return EINTR); the registered eventfd is signalled at once. */
	struct io_uring_params prm = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
	int r = uring_setup(2, &prm);
	if (r < 0)
		return r;
	p->fd = r;
	if (!(prm.features & IORING_FEAT_SINGLE_MMAP)) {
		r = -EOPNOTSUPP;
		goto fail;
	}
	if ((r = has_futex_wait(p->fd)) < 0)
		goto fail;
	uint64_t sq_len = prm.sq_off.array + prm.sq_entries * sizeof(uint32_t);
	uint64_t cq_len = prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe);
	p->ring_len = sq_len > cq_len ? sq_len : cq_len;
	p->sqes_len = prm.sq_entries * sizeof(struct io_uring_sqe);
	if (!(p->ring = map_ring(p->fd, p->ring_len, IORING_OFF_SQ_RING)) ||
	    !(p->sqes = map_ring(p->fd, p->sqes_len, IORING_OFF_SQES))) {
		r = -errno;
		goto fail;
	}
	char *b = p->ring;
	p->sq_tail = (uint32_t *)(b + prm.sq_off.tail);
	p->sq_mask = (uint32_t *)(b + prm.sq_off.ring_mask);
	p->sq_array = (uint32_t *)(b + prm.sq_off.array);
	p->cq_head = (uint32_t *)(b + prm.cq_off.head);
	p->cq_tail = (uint32_t *)(b + prm.cq_off.tail);
	p->cq_mask = (uint32_t *)(b + prm.cq_off.ring_mask);
	p->cq_flags = (uint32_t *)(b + prm.cq_off.flags);
	p->cqes = b + prm.cq_off.cqes;
	if ((r = uring_register(p->fd, IORING_REGISTER_EVENTFD, &efd, 1)) < 0)
		goto fail;
	return 0;
fail:
	futex_poll_close(p);
	return r;
}

int futex_poll_arm(struct futex_poll *p, uint32_t *word, uint32_t expected)
{
	if (p->armed)
		return -EBUSY;
	uint32_t tail = *p->sq_tail, i = tail & *p->sq_mask;
	struct io_uring_sqe *e = (struct io_uring_sqe *)p->sqes + i;
	memset(e, 0, sizeof(*e));
	e->opcode = OP_FUTEX_WAIT;
	e->fd = FUTEX2_SIZE_U32_;          /* shared: no FUTEX2_PRIVATE */
	e->addr = (uint64_t)(uintptr_t)word;
	e->off = expected;                 /* the kernel's addr2: the value */
	e->addr3 = FUTEX_BITSET_ANY;
	p->sq_array[i] = i;
	__atomic_store_n(p->sq_tail, tail + 1, __ATOMIC_RELEASE);
	int r = uring_enter(p->fd, 1, 0);
	if (r < 0)
		return r;
	if (r != 1)
		return -EAGAIN;
	p->armed = 1;
	return 0;
}

int futex_poll_reap(struct futex_poll *p)
{
	if (!p->armed)
		return 0;
	/* runs the completion this thread was left to run (DEFER_TASKRUN).
	 * The eventfd was signalled when the wake queued it; posting it must
	 * not signal again (a second, empty pass of the loop), and no other
	 * wait is queued meanwhile to need the signal */
	__atomic_fetch_or(p->cq_flags, IORING_CQ_EVENTFD_DISABLED, __ATOMIC_RELAXED);
	int r = uring_enter(p->fd, 0, IORING_ENTER_GETEVENTS);
	__atomic_fetch_and(p->cq_flags, ~IORING_CQ_EVENTFD_DISABLED, __ATOMIC_RELAXED);
	if (r < 0)
		return r;
	uint32_t head = *p->cq_head;
	if (head == __atomic_load_n(p->cq_tail, __ATOMIC_ACQUIRE))
		return 0;
	int res = ((const struct io_uring_cqe *)p->cqes)[head & *p->cq_mask].res;
	__atomic_store_n(p->cq_head, head + 1, __ATOMIC_RELEASE);
	p->armed = 0;
	/* woken, the value had moved already, or interrupted: look at the
	 * word and arm again; anything else would only fail again */
	return res == 0 || res == -EAGAIN || res == -EINTR ? 1 : res;
}

void futex_poll_close(struct futex_poll *p)
{
	if (p->sqes)
		munmap(p->sqes, p->sqes_len);
	if (p->ring)
		munmap(p->ring, p->ring_len);
	if (p->fd >= 0)
		close(p->fd);
	memset(p, 0, sizeof(*p));
	p->fd = -1;
}
