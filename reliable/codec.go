package reliable

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// The body of a job message is the job as enqueued in a compact binary form,
// not JSON: every job's message is decoded by a worker, and decoding JSON
// (reflection, base64, RFC 3339 times) was the largest cost of the worker's
// own in the profile. Records in the bucket stay JSON (readers outside the
// package decode them), written by appendRecord, which is json.Marshal's
// output without its reflection.
//
//	'J' 1                       magic and version
//	uvarint len + bytes         jid, route, target, baggage, arg
//	uvarint                     max attempts, gen, len(backoff)
//	varint                      each back-off (ns)
//	varint                      not before, deadline, created (Unix ns, 0 = zero time)
const msgVersion = 1

var errBadMsg = errors.New("not a job message")

// encodeMsg is the body of r's job message: the job as enqueued.
func encodeMsg(r *record) []byte {
	b := make([]byte, 0, 64+len(r.JID)+len(r.Route)+len(r.Target)+len(r.Baggage)+len(r.Arg)+8*len(r.Backoff))
	b = append(b, 'J', msgVersion)
	for _, s := range []string{r.JID, r.Route, r.Target, r.Baggage} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Arg)))
	b = append(b, r.Arg...)
	b = binary.AppendUvarint(b, uint64(max(r.MaxAttempts, 0)))
	b = binary.AppendUvarint(b, uint64(max(r.Gen, 0)))
	b = binary.AppendUvarint(b, uint64(len(r.Backoff)))
	for _, d := range r.Backoff {
		b = binary.AppendVarint(b, int64(d))
	}
	for _, t := range []time.Time{r.NotBefore, r.Deadline, r.Created} {
		b = binary.AppendVarint(b, unixNano(t))
	}
	return b
}

// decodeMsg decodes a job message's body into a queued record (revision 0).
func decodeMsg(b []byte) (*record, error) {
	if len(b) < 2 || b[0] != 'J' || b[1] != msgVersion {
		return nil, errBadMsg
	}
	d := msgDecoder{b: b[2:]}
	r := &record{}
	r.JID, r.Route, r.Target, r.Baggage = d.str(), d.str(), d.str(), d.str()
	if n := d.uvarint(); n > 0 && d.ok(n) {
		r.Arg = append([]byte(nil), d.b[:n]...)
		d.b = d.b[n:]
	}
	r.MaxAttempts, r.Gen = int(d.uvarint()), int(d.uvarint())
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b)) {
		r.Backoff = make([]time.Duration, n)
		for i := range r.Backoff {
			r.Backoff[i] = time.Duration(d.varint())
		}
	}
	r.NotBefore, r.Deadline, r.Created = d.time(), d.time(), d.time()
	if d.err != nil || r.JID == "" || r.Route == "" {
		return nil, errBadMsg
	}
	r.State, r.Updated = Queued, r.Created
	return r, nil
}

type msgDecoder struct {
	b   []byte
	err error
}

func (d *msgDecoder) ok(n uint64) bool {
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errBadMsg
	}
	return d.err == nil
}

func (d *msgDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadMsg
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *msgDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadMsg
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *msgDecoder) str() string {
	n := d.uvarint()
	if !d.ok(n) {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *msgDecoder) time() time.Time {
	ns := d.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// appendRecord appends r as JSON, exactly as json.Marshal(r) writes it
// (same keys, order, omissions and encodings), for the bucket's readers.
func appendRecord(b []byte, r *record) []byte {
	b = append(b, `{"jid":`...)
	b = appendString(b, r.JID)
	b = append(b, `,"route":`...)
	b = appendString(b, r.Route)
	if len(r.Arg) > 0 {
		b = append(b, `,"arg":`...)
		b = appendBytes(b, r.Arg)
	}
	b = append(b, `,"state":`...)
	b = appendString(b, string(r.State))
	if len(r.Attempts) > 0 {
		b = append(b, `,"attempts":[`...)
		for i := range r.Attempts {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAttempt(b, &r.Attempts[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(r.MaxAttempts), 10)
	if len(r.Backoff) > 0 {
		b = append(b, `,"backoff":[`...)
		for i, d := range r.Backoff {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(d), 10)
		}
		b = append(b, ']')
	}
	if !r.NotBefore.IsZero() {
		b = append(b, `,"not_before":`...)
		b = appendTime(b, r.NotBefore)
	}
	if !r.Deadline.IsZero() {
		b = append(b, `,"deadline":`...)
		b = appendTime(b, r.Deadline)
	}
	if r.Target != "" {
		b = append(b, `,"target":`...)
		b = appendString(b, r.Target)
	}
	if len(r.Result) > 0 {
		b = append(b, `,"result":`...)
		b = appendBytes(b, r.Result)
	}
	if r.LastError != nil {
		b = append(b, `,"last_error":`...)
		b = appendError(b, r.LastError)
	}
	b = append(b, `,"created":`...)
	b = appendTime(b, r.Created)
	b = append(b, `,"updated":`...)
	b = appendTime(b, r.Updated)
	if r.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, r.Seq, 10)
	}
	if r.Gen != 0 {
		b = append(b, `,"gen":`...)
		b = strconv.AppendInt(b, int64(r.Gen), 10)
	}
	if r.Baggage != "" {
		b = append(b, `,"baggage":`...)
		b = appendString(b, r.Baggage)
	}
	return append(b, '}')
}

func appendAttempt(b []byte, a *Attempt) []byte {
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, int64(a.N), 10)
	b = append(b, `,"server":`...)
	b = appendString(b, a.Server)
	b = append(b, `,"started":`...)
	b = appendTime(b, a.Started)
	if !a.Ended.IsZero() {
		b = append(b, `,"ended":`...)
		b = appendTime(b, a.Ended)
	}
	if a.Error != nil {
		b = append(b, `,"error":`...)
		b = appendError(b, a.Error)
	}
	if a.Skipped {
		b = append(b, `,"skipped":true`...)
	}
	return append(b, '}')
}

// appendError writes an ErrorInfo with json.Marshal (rare: failed
// attempts only; its metadata is a map, whose key order json.Marshal
// fixes).
func appendError(b []byte, e *ErrorInfo) []byte {
	j, err := json.Marshal(e)
	if err != nil {
		panic("reliable: encode error info: " + err.Error())
	}
	return append(b, j...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendBytes(b []byte, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, escaping as encoding/json does
// (HTML-safe: <, > and & escaped too; invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
