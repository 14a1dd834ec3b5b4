// Package e2e holds end-to-end tests of kube-otel-bridge: the real bridge
// binary runs as a subprocess against a real mini cluster (test/cluster) and
// exports to a real OTLP/gRPC receiver (test/otlpreceiver). Everything lives
// in _test.go files; run with
//
//	go test -count=1 -timeout 10m ./test/e2e/...
//
// The mini cluster needs the binaries built by `make cluster-bins`. Without
// them the package fails, unless -short is given, in which case it is
// skipped. TestMain builds the bridge from this repository; set
// E2E_BRIDGE_BIN to test another binary instead.
package e2e
