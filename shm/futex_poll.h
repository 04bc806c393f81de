/* futex_poll — a futex wait that an epoll loop can wait on.
 *
 * A futex cannot be polled, so a loop that must also watch sockets needs a
 * thread to sleep on it and pass the wake-up on.  io_uring (Linux >= 6.7)
 * can wait on a futex instead: its completion signals an eventfd the loop
 * already polls, in the waker's own FUTEX_WAKE, with no thread between.
 * Shared futexes, so a wake from another process completes the wait.
 *
 * Single-threaded: the thread that opens it must be the one that arms and
 * reaps (the ring is created SINGLE_ISSUER | DEFER_TASKRUN).
 */
#ifndef MI_FUTEX_POLL_H
#define MI_FUTEX_POLL_H
#include <stdint.h>

struct futex_poll {
	int fd;                   /* the io_uring; -1 when closed */
	void *ring;               /* SQ and CQ rings (one mapping) */
	uint64_t ring_len;
	void *sqes;
	uint64_t sqes_len;
	uint32_t *sq_tail, *sq_mask, *sq_array;
	uint32_t *cq_head, *cq_tail, *cq_mask, *cq_flags;
	void *cqes;
	int armed;
};

/* Sets up the ring and makes its completions signal efd.  Returns 0, or
 * -errno when this kernel cannot (io_uring disabled or absent: ENOSYS,
 * EPERM; no futex wait in io_uring: EOPNOTSUPP).  p is closed on failure. */
int futex_poll_open(struct futex_poll *p, int efd);
/* Queues one wait for *word to be woken while it holds expected (at once
 * if it differs).  At most one wait at a time: -EBUSY while armed. */
int futex_poll_arm(struct futex_poll *p, uint32_t *word, uint32_t expected);
/* Collects a finished wait.  Returns 1 if the armed wait completed (arm
 * again), 0 if it is still waiting, -errno if collecting failed or the
 * wait itself failed (it is no longer armed then either). */
int futex_poll_reap(struct futex_poll *p);
/* Cancels a pending wait (closing the ring does) and unmaps; idempotent. */
void futex_poll_close(struct futex_poll *p);
#endif
