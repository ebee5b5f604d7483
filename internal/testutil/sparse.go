package testutil

import (
	"bytes"
	"fmt"
	"strconv"
)

// SparseTar is a tar holding one PAX 1.0 sparse file of size bytes that is
// all hole: about 2.5 KiB that a tar reader expands to size zeros. Go's
// archive/tar will not write sparse files; hostile-layer tests need one.
func SparseTar(name string, size int64) []byte {
	var b bytes.Buffer
	pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", strconv.FormatInt(size, 10))
	b.Write(RawTarHeader("pax", 'x', len(pax)))
	b.Write(padBlock([]byte(pax)))
	sparseMap := padBlock([]byte("1\n0\n0\n")) // one data block of 0 bytes at 0
	b.Write(RawTarHeader(name, '0', len(sparseMap)))
	b.Write(sparseMap)
	b.Write(make([]byte, 1024))
	return b.Bytes()
}

// SparseTarPAX01 is SparseTar in PAX 0.1 (the map in a PAX record).
func SparseTarPAX01(name string, size int64) []byte {
	var b bytes.Buffer
	pax := paxRecord("GNU.sparse.numblocks", "1") + paxRecord("GNU.sparse.map", "0,0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.size", strconv.FormatInt(size, 10))
	b.Write(RawTarHeader("pax", 'x', len(pax)))
	b.Write(padBlock([]byte(pax)))
	b.Write(RawTarHeader(name, '0', 0))
	b.Write(make([]byte, 1024))
	return b.Bytes()
}

// SparseTarOldGNU is SparseTar in the old GNU format (type 'S', the map
// and the real size in the header), at most 8 GiB (11 octal digits).
func SparseTarOldGNU(name string, size int64) []byte {
	size = min(size, 0o77777777777)
	h := RawTarHeader(name, 'S', 0)
	copy(h[257:], "ustar  \x00") // GNU magic
	copy(h[386:], fmt.Sprintf("%011o\x00%011o\x00", 0, 0))
	copy(h[483:], fmt.Sprintf("%011o\x00", size))
	TarChecksum(h)
	return append(h, make([]byte, 1024)...)
}

// RawTarHeader is a ustar header block written by hand (mode 0644, owner
// 0:0, time 0), for entries archive/tar's writer refuses to make.
func RawTarHeader(name string, typ byte, size int) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	TarChecksum(h)
	return h
}

// TarChecksum (re)computes the checksum of header block h.
func TarChecksum(h []byte) {
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	sum := 0
	for _, c := range h[:512] {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
}

func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecord is one "<len> key=value\n" record.
func paxRecord(k, v string) string {
	l := len(k) + len(v) + 3
	for {
		s := strconv.Itoa(l) + " " + k + "=" + v + "\n"
		if len(s) == l {
			return s
		}
		l = len(s)
	}
}
