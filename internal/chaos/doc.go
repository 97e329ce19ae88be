// Package chaos holds certgate's chaos test: the real binary on the AWS PCA
// double with injected faults, SIGKILLed and restarted on the same data
// while clients issue, then checked for lost, unrecorded, pending and
// duplicated certificates. It builds only with the tag:
//
//	go test -tags chaos -run TestChaos -timeout 15m ./internal/chaos -args -duration=150s
//
// .ci/chaos runs it against SQLite and, when CERTGATE_TEST_POSTGRES_DSN is
// set, PostgreSQL.
package chaos
