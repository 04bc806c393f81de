#include "common/fields.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scan {
	const uint8_t *p, *end;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* A string at s->p (its opening quote); *plain = no escape in it. */
static int skip_string(struct scan *s, int *plain)
{
	*plain = 1;
	s->p++;
	while (s->p < s->end) {
		uint8_t c = *s->p++;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			*plain = 0;
			if (s->p >= s->end)
				return -1;
			c = *s->p++;
			if (c == 'u') {
				for (int i = 0; i < 4; i++, s->p++)
					if (s->p >= s->end || !strchr("0123456789abcdefABCDEF", *s->p) || !*s->p)
						return -1;
			} else if (!strchr("\"\\/bfnrt", c) || !c) {
				return -1;
			}
		}
	}
	return -1;
}

static int digits(struct scan *s)
{
	const uint8_t *a = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > a ? 0 : -1;
}

/* A number as JSON spells it; s->p past it. */
static int skip_number(struct scan *s)
{
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (digits(s) < 0)
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (digits(s) < 0)
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (digits(s) < 0)
			return -1;
	}
	return 0;
}

static int literal(struct scan *s, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n))
		return -1;
	s->p += n;
	return 0;
}

/* Any value, nesting included, recursively: deeper than JSON_DEPTH_MAX
 * counts as not JSON, so a payload of brackets cannot exhaust the stack. */
#define JSON_DEPTH_MAX 64
static int skip_value(struct scan *s, int depth)
{
	ws(s);
	if (s->p >= s->end)
		return -1;
	uint8_t c = *s->p;
	if (c == '"') {
		int plain;
		return skip_string(s, &plain);
	}
	if (c == '-' || (c >= '0' && c <= '9'))
		return skip_number(s);
	if (c == 't')
		return literal(s, "true");
	if (c == 'f')
		return literal(s, "false");
	if (c == 'n')
		return literal(s, "null");
	if ((c != '{' && c != '[') || depth >= JSON_DEPTH_MAX)
		return -1;
	s->p++;
	ws(s);
	uint8_t close = c == '{' ? '}' : ']';
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return 0;
	}
	for (;;) {
		if (c == '{') {
			ws(s);
			int plain;
			if (s->p >= s->end || *s->p != '"' || skip_string(s, &plain) < 0)
				return -1;
			ws(s);
			if (s->p >= s->end || *s->p++ != ':')
				return -1;
		}
		if (skip_value(s, depth + 1) < 0)
			return -1;
		ws(s);
		if (s->p >= s->end)
			return -1;
		uint8_t d = *s->p++;
		if (d == close)
			return 0;
		if (d != ',')
			return -1;
	}
}

int utf8_valid(const uint8_t *p, size_t n)
{
	static const uint32_t least[4] = { 0, 0x80, 0x800, 0x10000 };
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, cp = c & 0x07;
		} else {
			return 0;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if (cp < least[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

int fields_json(const uint8_t *p, size_t len, struct field_val *out)
{
	struct scan s = { p, p + len };
	int n = 0;
	ws(&s);
	if (s.p >= s.end || *s.p++ != '{')
		return -1;
	ws(&s);
	if (s.p < s.end && *s.p == '}') {
		s.p++;
		goto done;
	}
	for (;;) {
		ws(&s);
		if (s.p >= s.end || *s.p != '"')
			return -1;
		const uint8_t *key = s.p + 1;
		int plain;
		if (skip_string(&s, &plain) < 0)
			return -1;
		size_t klen = (size_t)(s.p - 1 - key);
		ws(&s);
		if (s.p >= s.end || *s.p++ != ':')
			return -1;
		ws(&s);
		const uint8_t *v = s.p;
		if (skip_value(&s, 1) < 0)
			return -1;
		size_t vlen = (size_t)(s.p - v);
		if (plain && klen > 0 && klen <= FIELD_NAME_MAX && n < FIELDS_MAX && (*v == '-' || (*v >= '0' && *v <= '9')) &&
		    utf8_valid(key, klen)) {
			char num[64];
			if (vlen < sizeof(num)) {
				memcpy(num, v, vlen);
				num[vlen] = 0;
				out[n++] = (struct field_val){ (const char *)key, (uint32_t)klen, strtod(num, NULL) };
			}
		}
		ws(&s);
		if (s.p >= s.end)
			return -1;
		uint8_t d = *s.p++;
		if (d == '}')
			break;
		if (d != ',')
			return -1;
	}
done:
	ws(&s);
	return s.p == s.end ? n : -1;
}

static const struct {
	const char *name;
	uint8_t size, kind;
} layout_types[] = {
	{ "u8", 1, LAYOUT_U },  { "i8", 1, LAYOUT_I },  { "u16", 2, LAYOUT_U }, { "i16", 2, LAYOUT_I },
	{ "u32", 4, LAYOUT_U }, { "i32", 4, LAYOUT_I }, { "u64", 8, LAYOUT_U }, { "i64", 8, LAYOUT_I },
	{ "f32", 4, LAYOUT_F }, { "f64", 8, LAYOUT_F },
};

static int layout_one(const char *a, size_t len, struct layout_field *f, char *err, size_t err_len)
{
	char item[160];
	while (len && (*a == ' ' || *a == '\t'))
		a++, len--;
	while (len && (a[len - 1] == ' ' || a[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(item)) {
		snprintf(err, err_len, "an empty or overlong entry (want name:type@offset)");
		return -1;
	}
	memcpy(item, a, len);
	item[len] = 0;
	char *colon = strchr(item, ':'), *at = strchr(item, '@');
	if (!colon || !at || at < colon) {
		snprintf(err, err_len, "'%s': want name:type@offset, as temp:f32le@0", item);
		return -1;
	}
	*colon = *at = 0;
	size_t nlen = strlen(item);
	if (nlen == 0 || nlen > FIELD_NAME_MAX) {
		snprintf(err, err_len, "'%s': a field name of 1 to %d bytes", item, FIELD_NAME_MAX);
		return -1;
	}
	memcpy(f->name, item, nlen + 1);
	const char *t = colon + 1;
	size_t tlen = strlen(t);
	f->big_endian = 0;
	if (tlen > 2 && (!strcmp(t + tlen - 2, "le") || !strcmp(t + tlen - 2, "be"))) {
		f->big_endian = t[tlen - 2] == 'b';
		tlen -= 2;
	}
	unsigned i;
	for (i = 0; i < sizeof(layout_types) / sizeof(layout_types[0]); i++)
		if (strlen(layout_types[i].name) == tlen && !memcmp(layout_types[i].name, t, tlen))
			break;
	if (i == sizeof(layout_types) / sizeof(layout_types[0]) || ((layout_types[i].size == 1) != (tlen == strlen(t)))) {
		snprintf(err, err_len, "field %s: type '%s': use u8, i8, or u16 i16 u32 i32 u64 i64 f32 f64 with le or be",
			 f->name, t);
		return -1;
	}
	f->size = layout_types[i].size;
	f->kind = layout_types[i].kind;
	char *e;
	unsigned long off = strtoul(at + 1, &e, 10);
	if (!at[1] || *e || off > 1u << 20) {
		snprintf(err, err_len, "field %s: offset '%s': a byte offset, 0 to %u", f->name, at + 1, 1u << 20);
		return -1;
	}
	f->off = (uint32_t)off;
	return 0;
}

int layout_parse(const char *s, struct layout *ret, char *err, size_t err_len)
{
	ret->n = 0;
	while (*s) {
		const char *c = strchr(s, ',');
		size_t len = c ? (size_t)(c - s) : strlen(s);
		if (ret->n == FIELDS_MAX) {
			snprintf(err, err_len, "more than %d fields", FIELDS_MAX);
			return -1;
		}
		struct layout_field *f = &ret->f[ret->n];
		if (layout_one(s, len, f, err, err_len) < 0)
			return -1;
		for (unsigned i = 0; i < ret->n; i++)
			if (!strcmp(ret->f[i].name, f->name)) {
				snprintf(err, err_len, "field %s named twice", f->name);
				return -1;
			}
		ret->n++;
		s += len + (c != NULL);
	}
	if (ret->n == 0) {
		snprintf(err, err_len, "no fields");
		return -1;
	}
	return 0;
}

int fields_layout(const struct layout *l, const uint8_t *p, size_t len, struct field_val *out)
{
	int n = 0;
	for (unsigned i = 0; i < l->n; i++) {
		const struct layout_field *f = &l->f[i];
		if ((size_t)f->off + f->size > len)
			continue;
		uint64_t u = 0;
		for (unsigned b = 0; b < f->size; b++) {
			unsigned at = f->big_endian ? b : f->size - 1 - b;
			u = u << 8 | p[f->off + at];
		}
		double v;
		if (f->kind == LAYOUT_F) {
			if (f->size == 4) {
				uint32_t w = (uint32_t)u;
				float x;
				memcpy(&x, &w, 4);
				v = x;
			} else {
				memcpy(&v, &u, 8);
			}
		} else if (f->kind == LAYOUT_I) {
			unsigned shift = 64 - 8 * f->size;
			v = (double)((int64_t)(u << shift) >> shift);
		} else {
			v = (double)u;
		}
		out[n++] = (struct field_val){ f->name, (uint32_t)strlen(f->name), v };
	}
	return n;
}
