// Command rsakeys generates RSA-4096 keys with Go's crypto/rsa, as CABPT and talosctl do for
// a Talos secrets bundle's service-account key (Talos' contract > 1.6): the reference the
// fleet benchmark measures the clusters' bundles against. It prints nothing; its CPU is read
// by the benchmark from the process's resource usage.
//
//	rsakeys N
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"strconv"
)

func main() {
	n := 1
	if len(os.Args) > 1 {
		var err error
		if n, err = strconv.Atoi(os.Args[1]); err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "usage: rsakeys N (N >= 1)")
			os.Exit(2)
		}
	}
	for i := 0; i < n; i++ {
		if _, err := rsa.GenerateKey(rand.Reader, 4096); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
