/* money.h - exact money: int64 nano-dollars, parsed from and printed as
 * decimal text, never through a double.
 *
 * Pure functions, no allocation, thread-safe. */
#ifndef CM_MONEY_H
#define CM_MONEY_H

#include <stddef.h>
#include <stdint.h>

#define CM_NANOS_PER_USD 1000000000LL
/* Largest amount one field may carry: one million dollars. An agent's
 * total per window is capped at a billion (CM_TOTAL_MAX, refusal.h), so one
 * group commit of 4,000 maximal values on top of a full window stays inside
 * int64 (about 9.2 billion dollars). */
#define CM_MONEY_MAX (1000000LL * CM_NANOS_PER_USD)
/* Enough for "-9223372036.854775808" and the NUL. */
#define CM_MONEY_BUFSZ 32

/* Parses the text of a JSON number (RFC 8259 grammar: optional '-', integer
 * part without leading zeros, optional fraction, optional exponent) into
 * nano-dollars, rounding half-even at the 9th decimal. `text` need not be
 * NUL-terminated; exactly `len` bytes are read.
 * Returns CM_OK, CM_EINVAL when the text is not a JSON number, CM_ERANGE when
 * the value is negative (after rounding; "-0" is 0) or above CM_MONEY_MAX. */
int cm_money_parse(const char *text, size_t len, int64_t *out);

/* cm_money_parse for an amount that must be whole nano-dollars: CM_EINVAL
 * as well when rounding would change it ("0.0000000015"), so a price is
 * stored as written or refused, never silently moved. */
int cm_money_parse_exact(const char *text, size_t len, int64_t *out);

/* Writes `nanos` as the shortest exact JSON number text ("12.47", "200",
 * "0.000000001", "-3.5") into buf, NUL-terminated. Returns the length written
 * (excluding the NUL), or 0 when bufsz < CM_MONEY_BUFSZ. */
size_t cm_money_format(int64_t nanos, char *buf, size_t bufsz);

/* cm_money_format for nano-dollars of any size given as decimal text, an
 * optional '-' and digits: a sum PostgreSQL computed in numeric, which may
 * be past int64. Returns the length written, or 0 when the text is not
 * that or the result and its NUL do not fit in bufsz (3 bytes more than
 * the digit count or 10, whichever is larger, always do; CM_MONEY_BUFSZ
 * for anything int64 holds). */
size_t cm_money_format_text(const char *nanos, char *buf, size_t bufsz);

#endif
