//go:build windows

package runner

import (
	"sync"

	"golang.org/x/sys/windows"
)

var getOEMCP = windows.NewLazySystemDLL("kernel32.dll").NewProc("GetOEMCP")

// systemCodePages are the system's OEM and ANSI code pages, read once.
var systemCodePages = sync.OnceValue(func() codePages {
	cp := codePages{ANSI: int(windows.GetACP())}
	if getOEMCP.Find() == nil {
		oem, _, _ := getOEMCP.Call()
		cp.OEM = int(uint32(oem))
	}
	return cp
})
