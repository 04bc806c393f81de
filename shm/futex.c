#include "shm/futex.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/atomic.h"

int futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(timeout_ns / 1000000000ull),
			       .tv_nsec = (long)(timeout_ns % 1000000000ull) };
	long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
	if (r == 0)
		return 0;
	if (errno == EAGAIN)
		return 0;
	return -errno;
}

int futex_wake(uint32_t *word, int n)
{
	long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
	return r < 0 ? -errno : (int)r;
}

void futex_seq_signal(struct futex_seq *f)
{
	shm_fetch_add(&f->seq, 1);
	/* seq_cst pairs with the waiter's increment of waiters before it reads
	 * seq: either it sees our new seq, or we see its waiter count. */
	if (__atomic_load_n(&f->waiters, __ATOMIC_SEQ_CST))
		futex_wake(&f->seq, INT_MAX);
}

uint32_t futex_seq_enter(struct futex_seq *f)
{
	shm_fetch_add(&f->waiters, 1);
	return __atomic_load_n(&f->seq, __ATOMIC_SEQ_CST);
}

void futex_seq_leave(struct futex_seq *f)
{
	shm_fetch_sub(&f->waiters, 1);
}

int futex_seq_wait(struct futex_seq *f, uint32_t seen, uint64_t timeout_ns)
{
	int r = 0;
	if (__atomic_load_n(&f->seq, __ATOMIC_SEQ_CST) == seen)
		r = futex_wait(&f->seq, seen, timeout_ns);
	shm_fetch_sub(&f->waiters, 1);
	return r;
}
