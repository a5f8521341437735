package replica

import (
	"encoding/binary"
	"errors"
	"os"
)

// Reading change rows page by page.
//
// A damaged interior page of the change table's b-tree hides every leaf
// below it from SQLite, though the leaves themselves are intact. For a
// database in clear, Salvage therefore also reads the file (and its
// write-ahead log) page by page, as the SQLite file format lays them
// out: every table leaf page, each cell's record, with its overflow
// pages. A record of the change table's shape (six columns: the row ID
// alias, chart, hash, change, source, signature) is a candidate, taken
// only once its change decodes and its hash is the one stored
// (checkSalvaged), and only for a log position SQLite could not read. An
// encrypted database's pages cannot be read this way.

// maxPageRows bounds the candidate rows a page scan returns.
const maxPageRows = 1 << 22

// errPageFormat is a page or record that does not follow the format.
var errPageFormat = errors.New("not a well-formed page")

// fileScan reads the pages of one database file and its write-ahead log.
type fileScan struct {
	pageSize int
	usable   int
	pages    [][]byte // every page image: the file's, then the log's frames
	byNumber map[uint32][]byte
}

// scanFile reads the database at path and its write-ahead log, if any.
// The page size is the file's own when its header reads, else the
// log's, else 4096.
func scanFile(path string) (*fileScan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	wal, _ := os.ReadFile(path + "-wal")
	size, reserved := 0, 0
	if len(data) >= 100 && string(data[:16]) == "SQLite format 3\x00" {
		size, reserved = int(binary.BigEndian.Uint16(data[16:18])), int(data[20])
		if size == 1 {
			size = 65536
		}
	}
	if size == 0 && len(wal) >= 32 {
		size = int(binary.BigEndian.Uint32(wal[8:12]))
	}
	if size < 512 || size > 65536 || size&(size-1) != 0 {
		size = 4096
	}
	f := &fileScan{pageSize: size, usable: size - reserved, byNumber: map[uint32][]byte{}}
	for n := 0; (n+1)*size <= len(data); n++ {
		p := data[n*size : (n+1)*size]
		f.pages = append(f.pages, p)
		f.byNumber[uint32(n+1)] = p
	}
	// Frames of the log: a 24-byte header (the page number first), then
	// the page. A later frame of a page is its newer image.
	if len(wal) >= 32 && int(binary.BigEndian.Uint32(wal[8:12])) == size {
		for off := 32; off+24+size <= len(wal); off += 24 + size {
			n := binary.BigEndian.Uint32(wal[off:])
			p := wal[off+24 : off+24+size]
			f.pages = append(f.pages, p)
			if n > 0 {
				f.byNumber[n] = p
			}
		}
	}
	return f, nil
}

// rows returns the change-table-shaped records of every table leaf page,
// unchecked.
func (f *fileScan) rows() []SalvagedChange {
	var out []SalvagedChange
	for i, p := range f.pages {
		off := 0
		if i == 0 {
			off = 100 // the file header
		}
		if p[off] != 0x0D {
			continue
		}
		cells := int(binary.BigEndian.Uint16(p[off+3:]))
		for c := 0; c < cells && len(out) < maxPageRows; c++ {
			at := off + 8 + 2*c
			if at+2 > len(p) {
				break
			}
			if row, ok := f.cell(p, int(binary.BigEndian.Uint16(p[at:]))); ok {
				out = append(out, row)
			}
		}
	}
	return out
}

// cell reads the table leaf cell at offset at of page p as a change row.
func (f *fileScan) cell(p []byte, at int) (SalvagedChange, bool) {
	if at <= 0 || at >= len(p) {
		return SalvagedChange{}, false
	}
	size, n := sqlVarint(p[at:])
	if n == 0 || size > 1<<30 {
		return SalvagedChange{}, false
	}
	at += n
	rowid, n := sqlVarint(p[at:])
	if n == 0 || int64(rowid) <= 0 {
		return SalvagedChange{}, false
	}
	at += n
	payload, err := f.payload(p, at, int(size))
	if err != nil {
		return SalvagedChange{}, false
	}
	cols, err := sqlRecord(payload)
	// A row written before the signature column was added has five.
	if err != nil || len(cols) < 5 || len(cols) > 6 || cols[0].typ != 0 || cols[1].typ != 't' || cols[2].typ != 'b' || cols[3].typ != 'b' || cols[4].typ != 't' ||
		len(cols) == 6 && cols[5].typ != 'b' {
		return SalvagedChange{}, false
	}
	c := SalvagedChange{Seq: rowid, Chart: string(cols[1].v), Raw: cols[3].v, From: string(cols[4].v)}
	if len(cols) == 6 {
		c.Sig = cols[5].v
	}
	if len(cols[2].v) != len(c.Hash) {
		return SalvagedChange{}, false
	}
	copy(c.Hash[:], cols[2].v)
	return c, true
}

// payload returns a cell's payload of size bytes starting at offset at
// of page p, following its overflow pages.
func (f *fileScan) payload(p []byte, at, size int) ([]byte, error) {
	u := f.usable
	maxLocal := u - 35
	local := size
	if size > maxLocal {
		minLocal := (u-12)*32/255 - 23
		local = minLocal + (size-minLocal)%(u-4)
		if local > maxLocal {
			local = minLocal
		}
	}
	if at+local > len(p) {
		return nil, errPageFormat
	}
	out := make([]byte, 0, min(size, 1<<20))
	out = append(out, p[at:at+local]...)
	if local == size {
		return out, nil
	}
	if at+local+4 > len(p) {
		return nil, errPageFormat
	}
	next := binary.BigEndian.Uint32(p[at+local:])
	for hops := 0; len(out) < size; hops++ {
		op, ok := f.byNumber[next]
		if !ok || hops > len(f.byNumber) || u > len(op) {
			return nil, errPageFormat
		}
		take := min(size-len(out), u-4)
		out = append(out, op[4:4+take]...)
		next = binary.BigEndian.Uint32(op)
	}
	return out, nil
}

// sqlColumn is one value of a record: its kind (0 null or integer, 't'
// text, 'b' blob, 'f' float) and its bytes.
type sqlColumn struct {
	typ byte
	v   []byte
}

// sqlRecord decodes an SQLite record: a header of serial types, then the
// values.
func sqlRecord(b []byte) ([]sqlColumn, error) {
	hlen, n := sqlVarint(b)
	if n == 0 || hlen < uint64(n) || hlen > uint64(len(b)) {
		return nil, errPageFormat
	}
	head, body := b[n:hlen], b[hlen:]
	var cols []sqlColumn
	for len(head) > 0 && len(cols) < 64 {
		st, k := sqlVarint(head)
		if k == 0 {
			return nil, errPageFormat
		}
		head = head[k:]
		var size int
		var typ byte
		switch {
		case st == 0, st == 8, st == 9:
			size, typ = 0, 0
		case st >= 1 && st <= 4:
			size, typ = int(st), 0
		case st == 5:
			size, typ = 6, 0
		case st == 6:
			size, typ = 8, 0
		case st == 7:
			size, typ = 8, 'f'
		case st >= 12 && st%2 == 0:
			size, typ = int((st-12)/2), 'b'
		case st >= 13:
			size, typ = int((st-13)/2), 't'
		default:
			return nil, errPageFormat
		}
		if size < 0 || size > len(body) {
			return nil, errPageFormat
		}
		cols = append(cols, sqlColumn{typ: typ, v: body[:size]})
		body = body[size:]
	}
	if len(head) > 0 {
		return nil, errPageFormat
	}
	return cols, nil
}

// sqlVarint reads an SQLite varint (big-endian, 7 bits a byte, the ninth
// byte whole); n is 0 if b is too short.
func sqlVarint(b []byte) (v uint64, n int) {
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}
