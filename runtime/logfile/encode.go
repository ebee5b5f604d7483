package logfile

import (
	"encoding/binary"
	"time"
	"unicode/utf8"
)

// localHeader is the flag byte and the timestamp of a local record's body.
const localHeader = 1 + 8

// Local record flags.
const (
	flagStderr  = 1 << 0
	flagPartial = 1 << 1
)

// appendRecord encodes one record in format f. attrs is json-file's
// pre-encoded "attrs" object, or nil.
func appendRecord(b []byte, f Format, stream string, t time.Time, partial bool, line, attrs []byte) []byte {
	switch f {
	case JSON:
		return appendJSON(b, stream, t, partial, line, attrs)
	case Local:
		return appendLocal(b, stream, t, partial, line)
	}
	return appendCRI(b, stream, t, partial, line)
}

func appendCRI(b []byte, stream string, t time.Time, partial bool, line []byte) []byte {
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, line...)
	return append(b, '\n')
}

// appendJSON writes the fields in dockerd's order (log, stream, attrs,
// time) with dockerd's escaping, so that the bytes are those dockerd
// writes and tools that read docker's files byte-wise keep working.
func appendJSON(b []byte, stream string, t time.Time, partial bool, line, attrs []byte) []byte {
	b = append(b, `{"log":"`...)
	b = appendJSONString(b, line)
	if !partial {
		b = append(b, `\n`...)
	}
	b = append(b, `","stream":"`...)
	b = appendJSONString(b, []byte(stream))
	b = append(b, '"')
	if len(attrs) > 0 {
		b = append(b, `,"attrs":`...)
		b = append(b, attrs...)
	}
	b = append(b, `,"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}

// appendJSONString escapes s as dockerd's json-file writer does: \" \\ \n
// \r short, other control characters and <, >, & as \u00XX, invalid UTF-8
// as \ufffd, U+2028 and U+2029 escaped; the rest as is.
func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '\\' && c != '"' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

func appendLocal(b []byte, stream string, t time.Time, partial bool, line []byte) []byte {
	n := uint32(localHeader + len(line))
	b = binary.BigEndian.AppendUint32(b, n)
	var flags byte
	if stream == Stderr {
		flags |= flagStderr
	}
	if partial {
		flags |= flagPartial
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	b = append(b, line...)
	return binary.BigEndian.AppendUint32(b, n)
}
