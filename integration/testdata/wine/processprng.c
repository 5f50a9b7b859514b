/*
 * A stand-in bcryptprimitives.dll for Wine 8.0 (Debian 12), whose own lacks
 * ProcessPrng, which the Go runtime (1.24 and later) calls at start on
 * Windows: without it every Go program dies before main. It fills the
 * buffer from RtlGenRandom (advapi32's SystemFunction036), as ProcessPrng
 * does on Windows. Remove it once Debian's Wine exports ProcessPrng.
 *
 * Built by the Windows test (integration/wine_test.go) with
 *   x86_64-w64-mingw32-gcc -O2 -shared -o bcryptprimitives.dll processprng.c -ladvapi32
 * into the Wine prefix's system32, loaded with
 * WINEDLLOVERRIDES=bcryptprimitives=n,b.
 */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!RtlGenRandom(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
