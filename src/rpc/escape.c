/*
 * escape: JSON string and Prometheus label escaping (see escape.h).
 */
#include <string.h>

#include "escape.h"

/* U+FFFD REPLACEMENT CHARACTER in UTF-8. */
static const char replacement[] = "\xef\xbf\xbd";

size_t utf8_seq_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0; /* continuation byte, overlong lead (c0, c1) or beyond U+10FFFF */
	if (c == 0xe0)
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* above U+10FFFF */
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* The escape for one byte below 0x80 in JSON, or NULL when it stands as it is. */
static const char *json_escape_of(unsigned char c, char tmp[8])
{
	static const char hex[] = "0123456789abcdef";

	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	default:
		break;
	}
	if (c >= 0x20 && c != 0x7f)
		return NULL;
	memcpy(tmp, "\\u00", 4);
	tmp[4] = hex[c >> 4];
	tmp[5] = hex[c & 0xf];
	tmp[6] = '\0';
	return tmp;
}

static const char *prom_escape_of(unsigned char c, int help_text)
{
	if (c == '\\')
		return "\\\\";
	if (c == '\n')
		return "\\n";
	if (c == '"' && !help_text)
		return "\\\"";
	return NULL;
}

/* The two escapers differ only in how they treat one ASCII byte and what
 * they write for a byte that is not UTF-8. */
struct escaper {
	int json; /* else Prometheus */
	int help_text;
};

static size_t escape(const struct escaper *e, char *dst, size_t cap, const char *src, size_t len,
                     size_t *used)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t in = 0, out = 0;
	char tmp[8];

	while (in < len) {
		const char *piece;
		size_t plen, take;

		if (s[in] < 0x80) {
			piece = e->json ? json_escape_of(s[in], tmp)
			                : prom_escape_of(s[in], e->help_text);
			take = 1;
			if (piece == NULL) {
				piece = (const char *)s + in;
				plen = 1;
			} else {
				plen = strlen(piece);
			}
		} else if ((take = utf8_seq_len(s + in, len - in)) > 0) {
			piece = (const char *)s + in;
			plen = take;
		} else {
			piece = e->json ? "\\ufffd" : replacement;
			plen = strlen(piece);
			take = 1;
		}
		if (out + plen > cap)
			break;
		memcpy(dst + out, piece, plen);
		out += plen;
		in += take;
	}
	if (used != NULL)
		*used = in;
	return out;
}

size_t escape_json(char *dst, size_t cap, const char *src, size_t len, size_t *used)
{
	static const struct escaper e = {.json = 1};

	return escape(&e, dst, cap, src, len, used);
}

size_t escape_prom(char *dst, size_t cap, const char *src, size_t len, int help_text, size_t *used)
{
	const struct escaper e = {.json = 0, .help_text = help_text};

	return escape(&e, dst, cap, src, len, used);
}
