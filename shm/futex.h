/* futex — wait/wake on 32-bit sequence words in shared memory.
 *
 * Shared (not FUTEX_PRIVATE) futexes, since waiter and waker are different
 * processes.  A waker pays the FUTEX_WAKE syscall only when a waiter has
 * announced itself in the paired waiter count, so the hot path is syscall-free.
 * Every wait has a timeout: a dead peer can delay a waiter, never hang it.
 */
#ifndef MI_FUTEX_H
#define MI_FUTEX_H
#include <stdint.h>

/* A futex word and its waiter count, each on its own cache line. */
struct futex_seq {
	_Alignas(128) uint32_t seq;
	_Alignas(128) uint32_t waiters;
	uint8_t pad_[124];
};

/* Sleeps while *word == expected, at most timeout_ns.  Returns 0 when woken
 * or the value differs, -ETIMEDOUT, or -EINTR. */
int futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns);
int futex_wake(uint32_t *word, int n);

/* Waker side: bump the sequence, wake waiters only if one announced itself. */
void futex_seq_signal(struct futex_seq *f);
/* Waiter side: returns the current sequence, to test a condition against. */
uint32_t futex_seq_enter(struct futex_seq *f);
/* Leaves without sleeping (the condition already held). */
void futex_seq_leave(struct futex_seq *f);
/* Sleeps unless the sequence moved past seen; then leaves.  The caller
 * re-checks its condition after.  Returns 0, -ETIMEDOUT or -EINTR. */
int futex_seq_wait(struct futex_seq *f, uint32_t seen, uint64_t timeout_ns);
#endif
