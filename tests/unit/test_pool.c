/* test_pool — size-classed buffer pool (common/pool.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/pool.h"

#define KiB (1u << 10)
#define MiB (1u << 20)

static uint64_t in_use(const pool_t *p)
{
	struct pool_stats st;
	pool_stats(p, &st);
	return st.in_use;
}

static uint64_t bytes_in_use(const pool_t *p)
{
	struct pool_stats st;
	pool_stats(p, &st);
	return st.bytes_in_use;
}

static uint64_t reserved(const pool_t *p)
{
	struct pool_stats st;
	pool_stats(p, &st);
	return st.bytes_reserved;
}

static void test_new_pool_is_empty(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	assert_non_null(p);
	assert_int_equal(in_use(p), 0);
	assert_int_equal(bytes_in_use(p), 0);
	assert_int_equal(reserved(p), 0);
	pool_free(p);
	pool_free(NULL);
}

static void test_get_is_writable_for_n_bytes(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	static const size_t sizes[] = { 0, 1, 255, 256, 257, 1000, 4096, 65535, 65536, 65537, MiB };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *b = pool_get(p, sizes[i]);
		assert_non_null(b);
		memset(b, 0xC3, sizes[i]);
		pool_put(p, b, sizes[i]);
	}
	assert_int_equal(in_use(p), 0);
	pool_free(p);
}

static void test_put_then_get_same_size_reuses_buffer(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	void *a = pool_get(p, 1000);
	assert_non_null(a);
	pool_put(p, a, 1000);
	/* any request of the same class gets it back */
	void *b = pool_get(p, 600);
	assert_ptr_equal(a, b);
	pool_put(p, b, 600);
	/* another class does not */
	void *c = pool_get(p, 3000);
	assert_ptr_not_equal(a, c);
	pool_put(p, c, 3000);
	/* the large class reuses its single-buffer slab too */
	void *l = pool_get(p, 5 * MiB);
	assert_non_null(l);
	pool_put(p, l, 5 * MiB);
	assert_ptr_equal(pool_get(p, 5 * MiB), l);
	pool_put(p, l, 5 * MiB);
	pool_free(p);
}

static void test_classes_are_powers_of_two_from_256(void **state)
{
	(void)state;
	static const struct { size_t n, cls; } t[] = {
		{ 0, 256 }, { 1, 256 }, { 256, 256 }, { 257, 512 }, { 512, 512 }, { 513, 1024 },
		{ 4096, 4096 }, { 4097, 8192 }, { 64 * KiB, 64 * KiB }, { 64 * KiB + 1, 128 * KiB },
		{ MiB - 1, MiB }, { 16 * MiB, 16 * MiB },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		pool_t *p = pool_new();
		void *b = pool_get(p, t[i].n);
		assert_non_null(b);
		assert_int_equal(in_use(p), 1);
		assert_int_equal(bytes_in_use(p), t[i].cls);
		pool_put(p, b, t[i].n);
		assert_int_equal(in_use(p), 0);
		assert_int_equal(bytes_in_use(p), 0);
		pool_free(p);
	}
}

static void test_small_classes_come_in_64k_slabs(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	enum { N = 64 * KiB / 256 };
	void *b[N + 1];
	for (int i = 0; i < N; i++) {
		b[i] = pool_get(p, 200);
		assert_non_null(b[i]);
		assert_int_equal(reserved(p), 64 * KiB);
	}
	b[N] = pool_get(p, 200);
	assert_non_null(b[N]);
	assert_int_equal(reserved(p), 128 * KiB);
	assert_int_equal(in_use(p), N + 1);
	assert_int_equal(bytes_in_use(p), (N + 1) * 256);
	/* one buffer per slab at and above 64 KiB */
	void *big = pool_get(p, 100 * KiB);
	assert_int_equal(reserved(p), 128 * KiB + 128 * KiB);
	pool_put(p, big, 100 * KiB);
	for (int i = 0; i <= N; i++)
		pool_put(p, b[i], 200);
	assert_int_equal(in_use(p), 0);
	assert_int_equal(bytes_in_use(p), 0);
	pool_free(p);
}

/* Buffers handed out together never overlap: each keeps its own pattern. */
static void test_live_buffers_do_not_overlap(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	enum { N = 600 };
	uint8_t *b[N];
	size_t n[N];
	for (int i = 0; i < N; i++) {
		n[i] = 1 + (size_t)(i * 37) % 3000;
		b[i] = pool_get(p, n[i]);
		assert_non_null(b[i]);
		memset(b[i], (uint8_t)i, n[i]);
	}
	for (int i = 0; i < N; i++)
		for (size_t k = 0; k < n[i]; k++)
			assert_int_equal(b[i][k], (uint8_t)i);
	for (int i = 0; i < N; i++)
		pool_put(p, b[i], n[i]);
	assert_int_equal(in_use(p), 0);
	pool_free(p);
}

static void test_16mib_limit(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	void *b = pool_get(p, 16 * MiB);
	assert_non_null(b);
	memset(b, 1, 16 * MiB);
	uint64_t r = reserved(p);
	assert_null(pool_get(p, 16 * MiB + 1));
	assert_null(pool_get(p, SIZE_MAX));
	/* a refused request changes nothing */
	assert_int_equal(in_use(p), 1);
	assert_int_equal(reserved(p), r);
	pool_put(p, b, 16 * MiB);
	assert_int_equal(in_use(p), 0);
	pool_free(p);
}

static void test_put_null_is_ignored(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	void *b = pool_get(p, 300);
	pool_put(p, NULL, 300);
	pool_put(p, NULL, 0);
	assert_int_equal(in_use(p), 1);
	assert_int_equal(bytes_in_use(p), 512);
	pool_put(p, b, 300);
	assert_int_equal(in_use(p), 0);
	pool_free(p);
}

/* After warm-up, get/put cycles reserve nothing more. */
static void test_steady_state_reserves_nothing_more(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	void *b[64];
	uint64_t warm = 0;
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 64; i++)
			b[i] = pool_get(p, (size_t)(i + 1) * 1000);
		for (int i = 63; i >= 0; i--)
			pool_put(p, b[i], (size_t)(i + 1) * 1000);
		if (round == 0)
			warm = reserved(p);
		assert_int_equal(reserved(p), warm);
	}
	assert_int_equal(in_use(p), 0);
	pool_free(p);
}

/* Freeing the pool with buffers still out releases everything (LSan checks). */
static void test_free_with_buffers_out(void **state)
{
	(void)state;
	pool_t *p = pool_new();
	for (int i = 0; i < 10; i++)
		assert_non_null(pool_get(p, (size_t)1 << (8 + i)));
	pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_pool_is_empty),
		cmocka_unit_test(test_get_is_writable_for_n_bytes),
		cmocka_unit_test(test_put_then_get_same_size_reuses_buffer),
		cmocka_unit_test(test_classes_are_powers_of_two_from_256),
		cmocka_unit_test(test_small_classes_come_in_64k_slabs),
		cmocka_unit_test(test_live_buffers_do_not_overlap),
		cmocka_unit_test(test_16mib_limit),
		cmocka_unit_test(test_put_null_is_ignored),
		cmocka_unit_test(test_steady_state_reserves_nothing_more),
		cmocka_unit_test(test_free_with_buffers_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
