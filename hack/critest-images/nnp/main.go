// Command nnp stands in for registry.k8s.io/e2e-test-images/nonewprivs: it
// is installed setuid root and prints its effective uid, which critest's
// NoNewPrivs specs compare (0 without no_new_privs, the caller's uid with it).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
