/* fields — the numeric fields of a payload, for the index sink: a JSON
 * object's top-level numbers, or the values a declared binary layout names.
 *
 * No allocation: a payload is scanned in place, and field names point into
 * it (JSON) or into the layout.  A JSON key is taken as it is written, so a
 * key with a backslash escape is not a field name (its value is skipped);
 * nested objects and arrays are skipped, as are strings, true, false, null.
 * A payload that is not one whole JSON object has no fields at all.
 *
 * A layout is "name:type@offset, ..." with type one of u8 i8, u16 i16 u32
 * i32 u64 i64 f32 f64 followed by le or be (u8 and i8 take neither); a
 * payload too short for a field lacks that field only.
 */
#ifndef MI_FIELDS_H
#define MI_FIELDS_H
#include <stddef.h>
#include <stdint.h>

#define FIELDS_MAX 64          /* fields taken from one payload, the first ones */
#define FIELD_NAME_MAX 64

struct field_val {
	const char *name;      /* not NUL-terminated */
	uint32_t name_len;
	double value;
};

/* Whether p[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF). */
int utf8_valid(const uint8_t *p, size_t n);

/* A JSON object's top-level numbers, into out[FIELDS_MAX].  Returns how
 * many, or -1 when the payload is not one JSON object. */
int fields_json(const uint8_t *p, size_t len, struct field_val *out);

struct layout_field {
	char name[FIELD_NAME_MAX + 1];
	uint32_t off;
	uint8_t size;          /* 1, 2, 4, 8 */
	uint8_t kind;          /* LAYOUT_U, LAYOUT_I, LAYOUT_F */
	uint8_t big_endian;
};
enum { LAYOUT_U, LAYOUT_I, LAYOUT_F };

struct layout {
	struct layout_field f[FIELDS_MAX];
	unsigned n;
};

/* Parses a layout string; 0, or -1 with err saying what is wrong (the
 * caller names the key). */
int layout_parse(const char *s, struct layout *ret, char *err, size_t err_len);
/* The layout's fields that the payload is long enough for, into out. */
int fields_layout(const struct layout *l, const uint8_t *p, size_t len, struct field_val *out);
#endif
