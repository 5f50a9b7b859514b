package runner

import (
	"fmt"
	"io"
	"os"
)

// readTail returns at most limit bytes of the end of the file at path,
// starting no earlier than offset, decoded to UTF-8 (decodeOutput, with the
// system's code pages), and the encoding it was decoded from ("" for
// UTF-8). The run has already happened, so a read failure is reported
// inside the tail rather than as an error that would hide the run's result.
func readTail(path string, offset int64, limit int) (text, enc string) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(output tail unavailable: %v)", err), ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(output tail unavailable: %v)", err), ""
	}
	end := fi.Size()
	start := max(offset, end-int64(limit))
	if start >= end {
		return "", ""
	}
	buf := make([]byte, end-start)
	n, err := f.ReadAt(buf, start)
	if err != nil && err != io.EOF {
		return fmt.Sprintf("(output tail unavailable: %v)", err), ""
	}
	buf = buf[:n]
	bom := buf
	if start > offset {
		bom = make([]byte, 2)
		m, _ := f.ReadAt(bom, offset)
		bom = bom[:m]
	}
	return decodeOutput(buf, bom, start-offset, systemCodePages(), limit)
}
