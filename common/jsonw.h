/* jsonw — JSON text into a caller's buffer, for writers on a hot path
 * (the cloud sink's NDJSON lines) and for mi-query alike.
 *
 * A string is escaped as RFC 8259 asks (", \, control characters; DEL as
 * \u007f too, so a line stays printable); bytes >= 0x80 pass unchanged:
 * callers check UTF-8 first (common/fields.h utf8_valid) and write what is
 * not as base64 instead.
 */
#ifndef MI_JSONW_H
#define MI_JSONW_H
#include <stddef.h>
#include <stdint.h>

/* The most jsonw_escape writes for n input bytes. */
#define JSONW_ESC_MAX(n) (6 * (size_t)(n))

/* p[0..n) escaped, without quotes, into out (JSONW_ESC_MAX(n) bytes).
 * Returns the bytes written. */
size_t jsonw_escape(char *out, const uint8_t *p, size_t n);
#endif
